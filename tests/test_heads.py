"""Backbone, simple feature pyramid, heads and dense models at micro sizes: shapes, losses, freezing, layer decay."""
from __future__ import annotations

import re

import pytest
import torch

from mask3d_vit.engine.optim import OptimConfig, build_optimizer
from mask3d_vit.models.backbone import ViTBackbone, default_out_indices, prefix_group_matcher
from mask3d_vit.models.dense import DenseModel, DenseModelConfig
from mask3d_vit.models.heads import FCNHead, LinearHead, UperNetHead
from mask3d_vit.models.necks import SimpleFeaturePyramid
from mask3d_vit.models.vit import build_encoder, encoder_patch_size

SIZES = [(32, 32), (48, 64), (40, 56)]  # the last is not a multiple of the patch size


def micro_cfg(**kwargs) -> DenseModelConfig:
    base = dict(encoder="vit_micro_patch16", img_size=(32, 32), neck_channels=32, head_channels=32, dropout=0.0)
    return DenseModelConfig(**{**base, **kwargs})


def batch(h: int, w: int, b: int = 2, num_classes: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"rgb": torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g),
            "label": torch.randint(0, num_classes + 1, (b, h, w), generator=g),
            "depth": 0.5 + 4 * torch.rand(b, 1, h, w, generator=g),
            "valid": torch.ones(b, 1, h, w, dtype=torch.bool)}


@pytest.mark.parametrize("grid", [(2, 2), (3, 5), (4, 6)])
def test_pyramid_strides_from_one_map_and_from_four(grid):
    neck = SimpleFeaturePyramid(in_channels=64, out_channels=16, top_block=True)
    h, w = grid
    out = neck(torch.randn(2, 64, h, w))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert neck.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert out["p2"].shape == (2, 16, 4 * h, 4 * w)
    assert out["p3"].shape == (2, 16, 2 * h, 2 * w)
    assert out["p4"].shape == (2, 16, h, w)
    assert out["p5"].shape == (2, 16, h // 2, w // 2)
    assert out["p6"].shape[-2:] == ((h // 2 + 1) // 2, (w // 2 + 1) // 2)
    maps = [torch.randn(2, 64, h, w) for _ in range(4)]
    assert [tuple(v.shape) for v in SimpleFeaturePyramid(in_channels=64, out_channels=16)(maps).values()] == \
        [(2, 16, 4 * h, 4 * w), (2, 16, 2 * h, 2 * w), (2, 16, h, w), (2, 16, h // 2, w // 2)]


def test_patch8_pyramid_keeps_strides_4_to_32():
    neck = SimpleFeaturePyramid(in_channels=64, out_channels=16, in_stride=8, scale_factors=(2.0, 1.0, 0.5, 0.25))
    out = neck(torch.randn(2, 64, 12, 16))
    assert neck.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    # A dense model on a patch-8 ViT builds that pyramid: its output keeps the stride-4 grid, not a stride-2 one.
    model = DenseModel.from_config(micro_cfg(encoder="vit_tiny_patch8", img_size=(32, 48)), task="seg", num_classes=5)
    assert model.backbone.patch_size == 8 == encoder_patch_size("vit_tiny_patch8")
    assert model.neck.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    with pytest.raises(ValueError, match="unknown encoder 'vit_tiny_patch9'"):
        encoder_patch_size("vit_tiny_patch9")
    main, _ = model.eval().forward_raw(batch(32, 48)["rgb"])
    assert main.shape == (2, 5, 8, 12)


def test_pyramid_levels_use_their_own_input():
    neck = SimpleFeaturePyramid(in_channels=64, out_channels=16).eval()
    maps = [torch.randn(1, 64, 4, 4) for _ in range(4)]
    base = neck(maps)
    maps[0] = maps[0] + 1.0
    changed = neck(maps)
    assert not torch.allclose(base["p2"], changed["p2"])
    assert torch.equal(base["p3"], changed["p3"]) and torch.equal(base["p5"], changed["p5"])


def test_pyramid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not supported"):
        SimpleFeaturePyramid(in_channels=64, scale_factors=(3.0,))
    with pytest.raises(ValueError, match="decreasing"):
        SimpleFeaturePyramid(in_channels=64, scale_factors=(1.0, 2.0))
    with pytest.raises(ValueError, match="unknown norm"):
        SimpleFeaturePyramid(in_channels=64, norm="IN")
    with pytest.raises(ValueError, match="4 levels but got 2"):
        SimpleFeaturePyramid(in_channels=64)([torch.randn(1, 64, 2, 2)] * 2)
    with pytest.raises(ValueError, match=r"expected \(B, 64, h, w\)"):
        SimpleFeaturePyramid(in_channels=64)(torch.randn(1, 32, 2, 2))


def test_heads_output_at_their_finest_input():
    levels = [torch.randn(2, 32, 16 // s, 24 // s) for s in (1, 2, 4, 8)]
    assert UperNetHead(in_channels=32, num_levels=4, num_outputs=7, channels=16)(levels).shape == (2, 7, 16, 24)
    assert FCNHead(in_channels=32, num_outputs=7, channels=16)(levels[2]).shape == (2, 7, 4, 6)
    linear = LinearHead(in_channels=32, num_outputs=7, num_inputs=2)
    assert linear(levels[:1] * 2).shape == (2, 7, 16, 24)
    with pytest.raises(ValueError, match="expects 4 pyramid levels"):
        UperNetHead(in_channels=32, num_levels=4, num_outputs=7)(levels[:3])


@pytest.mark.parametrize("head", ["linear", "upernet"])
@pytest.mark.parametrize("task", ["seg", "depth"])
def test_dense_model_shapes_for_several_sizes(head, task):
    torch.manual_seed(0)
    model = DenseModel.from_config(micro_cfg(head=head), task=task, num_classes=5)
    for h, w in SIZES:
        b = batch(h, w)
        model.train()
        out = model(b)
        expected = {"loss", "loss_ce" if task == "seg" else "loss_silog"} | (
            {"loss_aux"} if head == "upernet" else set())
        assert set(out) == expected and out["loss"].ndim == 0 and torch.isfinite(out["loss"])
        model.eval()
        pred = model.predict(b["rgb"])
        if task == "seg":
            assert pred.shape == (2, h, w) and pred.dtype == torch.int64
            assert pred.min() >= 1 and pred.max() <= 5
        else:
            assert pred.shape == (2, 1, h, w) and (pred > 0).all()


def test_sliding_window_covering_the_image_equals_whole_image():
    torch.manual_seed(0)
    model = DenseModel.from_config(micro_cfg(), task="seg", num_classes=5).eval()
    rgb = batch(48, 64)["rgb"]
    with torch.no_grad():
        torch.testing.assert_close(model.infer(rgb, window=64), model.infer(rgb))
        # 32-px windows every 16 px on 48x64: tops 0, 16 and lefts 0, 16, 32 (the last flush with the border).
        windows = model.infer(rgb, window=32, stride=16)
        crop = {(top, left): model.infer(rgb[..., top:top + 32, left:left + 32])
                for top in (0, 16) for left in (0, 16, 32)}
    assert windows.shape == (2, 5, 48, 64)
    # Each pixel is the mean of the windows that cover it, read at the pixel's place inside each window.
    expected = {
        (5, 5): [crop[0, 0][..., 5, 5]],
        (40, 60): [crop[16, 32][..., 24, 28]],
        (10, 40): [crop[0, 16][..., 10, 24], crop[0, 32][..., 10, 8]],
        (20, 20): [crop[0, 0][..., 20, 20], crop[0, 16][..., 20, 4], crop[16, 0][..., 4, 20], crop[16, 16][..., 4, 4]],
    }
    for (y, x), outputs in expected.items():
        torch.testing.assert_close(windows[..., y, x], sum(outputs) / len(outputs), msg=f"pixel ({y}, {x})")
    assert model.predict(rgb[..., :40, :56], window=32, stride=16).shape == (2, 40, 56)


def test_segmentation_loss_ignores_unlabeled_pixels():
    torch.manual_seed(0)
    model = DenseModel.from_config(micro_cfg(head="linear"), task="seg", num_classes=5).eval()
    b = batch(32, 32)
    b["label"][:] = 0
    out = model(b)
    assert out["loss"].item() == 0.0
    out["loss"].backward()  # still differentiable: a crop with no labels is a zero step, not a NaN


def test_depth_loss_is_zero_for_a_perfect_prediction_and_ignores_invalid_pixels():
    torch.manual_seed(0)
    model = DenseModel.from_config(micro_cfg(head="linear"), task="depth").eval()
    b = batch(32, 32)
    target = model.loss_target(b)
    perfect = target[0] - model.log_prior  # the head predicts log-depth relative to the depth prior
    assert model.criterion(perfect, target).item() == pytest.approx(1e-4)  # sqrt of the 1e-8 floor
    main, _ = model.forward_raw(b["rgb"])
    losses = []
    for junk in (0.0, 100.0):  # whatever depth invalid pixels hold, they must not matter
        bad = {**b, "depth": b["depth"].clone(), "valid": b["valid"].clone()}
        bad["valid"][..., :16, :] = False
        bad["depth"][..., :16, :] = junk
        losses.append(model.criterion(main, model.loss_target(bad)))
    assert torch.isfinite(losses[0]) and losses[0] == losses[1]
    assert losses[0] != model.criterion(main, target)


def test_backbone_out_indices_and_pruning():
    enc = build_encoder("vit_micro_patch16", img_size=32)
    backbone = ViTBackbone(encoder=enc, out_indices=4)
    assert backbone.out_indices == (0, 0, 1, 1)
    maps = backbone(torch.randint(0, 256, (1, 3, 40, 56), dtype=torch.uint8))
    assert [m.shape for m in maps] == [(1, 64, 3, 4)] * 4
    assert torch.equal(maps[0], maps[1]) and not torch.equal(maps[1], maps[2])
    assert default_out_indices(12, 4) == (2, 5, 8, 11)
    one = ViTBackbone(encoder=build_encoder("vit_micro_patch16", img_size=32), out_indices=(0,))
    assert len(one.encoder.blocks) == 1  # blocks after the last used one are pruned (no unused DDP params)
    with pytest.raises(ValueError, match="out of range"):
        ViTBackbone(encoder=build_encoder("vit_micro_patch16", img_size=32), out_indices=(5,))


def test_frozen_backbone_has_no_gradients_and_stays_in_eval_mode():
    torch.manual_seed(0)
    model = DenseModel.from_config(micro_cfg(head="linear", freeze_backbone=True, drop_path_rate=0.5), task="seg",
                                   num_classes=5)
    model.train()
    assert not model.backbone.encoder.training and model.head.training
    model(batch(32, 32))["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    optimized = {id(p) for g in build_optimizer(model, OptimConfig()).param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.head.parameters()}


def test_prefix_group_matcher_anchors_every_alternative():
    matcher = prefix_group_matcher({"stem": r"^cls_token|pos_embed", "blocks": [(r"^blocks\.(\d+)", None)]}, "a.b.")
    assert re.match(matcher["stem"], "a.b.pos_embed") and not re.match(matcher["stem"], "head.pos_embed")
    assert re.match(matcher["blocks"][0][0], "a.b.blocks.3.mlp").group(1) == "3"


@pytest.mark.parametrize("freeze", [False, True])
def test_layer_decay_groups_cover_every_parameter_once(freeze):
    torch.manual_seed(0)
    model = DenseModel.from_config(micro_cfg(freeze_backbone=freeze), task="seg", num_classes=5)
    groups = build_optimizer(model, OptimConfig(layer_decay=0.5, weight_decay=0.05)).param_groups
    seen = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    assert len(seen) == len(set(seen)) and set(seen) == set(trainable)
    scale = {trainable[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    decay = {trainable[id(p)]: g["weight_decay"] for g in groups for p in g["params"]}
    assert scale["head.classifier.1.weight"] == 1.0 and scale["neck.project.0.0.0.weight"] == 1.0
    if not freeze:
        # stem < block 0 < block 1 < heads: lr scales 0.5**3, 0.5**2, 0.5, 1
        assert scale["backbone.encoder.patch_embed.proj.weight"] == pytest.approx(0.125)
        assert scale["backbone.encoder.blocks.0.attn.qkv.weight"] == pytest.approx(0.25)
        assert scale["backbone.encoder.blocks.1.attn.qkv.weight"] == pytest.approx(0.5)
        assert decay["backbone.encoder.pos_embed"] == 0.0 and decay["backbone.encoder.blocks.0.mlp.fc1.weight"] > 0
