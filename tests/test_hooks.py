"""Models declare their own training hooks; the engine calls them without knowing (or importing) the models."""

import pytest
import torch
from timm.optim import param_groups_layer_decay

from mask3d_vit.engine.optim import OptimConfig
from mask3d_vit.engine.trainer import TrainConfig, Trainer
from mask3d_vit.models.dense import DenseModel, DenseModelConfig
from mask3d_vit.models.detection import DetectorConfig, ViTMaskRCNN
from mask3d_vit.models.mask3d import Mask3D
from toy import ToyData, ToyModel



def dense():
    cfg = DenseModelConfig(encoder="vit_micro_patch16", img_size=(32, 32), neck_channels=16, head_channels=16)
    return DenseModel.from_config(cfg, task="depth")


def detector():
    cfg = DetectorConfig(encoder="vit_micro_patch16", img_size=(64, 64), drop_path_rate=0.0, pyramid_channels=16,
                         box_head_dim=16, mask_head_dim=8)
    return ViTMaskRCNN.from_config(cfg, num_classes=3)


@pytest.mark.parametrize("build, prefix", [(lambda: dense().backbone, "encoder."), (dense, "backbone.encoder."),
                                           (detector, "detector.backbone.vit.encoder.")],
                         ids=["backbone", "dense", "detection"])
def test_vit_wrappers_hand_timm_hooks_through_under_their_own_names(build, prefix):
    model = build()
    params = dict(model.named_parameters())
    # timm's names (it also lists tokens this ViT does not have), re-anchored under the wrapper's path
    assert {prefix + "pos_embed", prefix + "cls_token"} <= model.no_weight_decay()
    assert all(name.startswith(prefix) for name in model.no_weight_decay())
    # Layer decay: the two encoder blocks get their own lr scales, everything outside the encoder the full lr.
    groups = param_groups_layer_decay(model, 0.05, no_weight_decay_list=model.no_weight_decay(), layer_decay=0.5)
    scale = {name: g["lr_scale"] for g in groups for name, p in params.items() if any(p is q for q in g["params"])}
    assert scale[prefix + "blocks.0.attn.qkv.weight"] < scale[prefix + "blocks.1.attn.qkv.weight"]
    assert all(s == 1.0 for name, s in scale.items() if not name.startswith(prefix))
    encoder = model.get_submodule(prefix.rstrip("."))
    model.set_grad_checkpointing(True)
    assert encoder.grad_checkpointing


class RecordsHooks(ToyModel):
    def __init__(self):
        super().__init__()
        self.calls = []

    def set_attention_backend(self, device, precision):
        self.calls.append((torch.device(device).type, precision))


def test_trainer_calls_the_attention_backend_hook_where_a_model_has_it_and_trains_one_without(tmp_path):
    model = RecordsHooks()
    train = TrainConfig(epochs=1, batch_size=4, precision="fp32", device="cpu")
    Trainer(model, ToyData(), train=train, optim=OptimConfig(), run_dir=tmp_path, config={})
    assert model.calls == [("cpu", "fp32")]
    # A model without the hook trains: every step taken, none skipped, its weights moved.
    plain = ToyModel()
    before = [p.detach().clone() for p in plain.parameters()]
    trainer = Trainer(plain, ToyData(), train=train, optim=OptimConfig(), run_dir=tmp_path / "plain", config={})
    result = trainer.fit()
    assert trainer.step == trainer.total_steps == 6 and result["skipped_steps"] == 0
    assert all(not torch.equal(a, b) for a, b in zip(before, plain.parameters()))


@pytest.mark.parametrize("build", [dense, detector, lambda: Mask3D(encoder="vit_micro_patch16", img_size=(32, 32))],
                         ids=["dense", "detection", "mask3d"])
def test_models_choose_their_attention_kernel(build):
    model = build()
    model.set_attention_backend("cpu", "bf16")
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    assert flags and not any(flags)
    model.set_attention_backend("cpu", "fp32")
    assert all(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
