"""Overrides that shrink a comparison (demo, transfer benchmark) to smoke size: micro ViT, 32x48, 16 frames, 1 epoch."""

COMPARISON_SMOKE = []
for section in ("pretrain", "seg", "depth_probe"):
    COMPARISON_SMOKE += [f"{section}.data.sources=[{{format: synthrooms, num_frames: 16, seed: 0}}]",
                         f"{section}.data.size=[32,48]"]
for section in ("pretrain", "seg"):
    COMPARISON_SMOKE += [f"{section}.model.encoder=vit_micro_patch16", f"{section}.model.img_size=[32,48]",
                         f"{section}.train.epochs=1", f"{section}.train.batch_size=8",
                         f"{section}.train.precision=fp32"]
COMPARISON_SMOKE += ["pretrain.model.decoder_dim=32", "pretrain.model.depth_dim=32", "pretrain.val_batches=1",
                     "seg.model.neck_channels=16", "seg.model.head_channels=16", "seg.eval.max_images=8",
                     "depth_probe.encoder=vit_micro_patch16", "depth_probe.img_size=[32,48]",
                     "depth_probe.batch_size=8", "depth_probe.max_images=8"]
