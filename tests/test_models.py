"""Encoder factories, masking, the Mask3D model's encoder path, depth/colour losses and input checks (micro sizes)."""
from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mask3d_vit.config import from_dict, to_dict
from mask3d_vit.models.mask3d import (Mask3D, Mask3DConfig, mask3d_vit_tiny_patch16_dec128d2b, patchify,
                                      random_masking, unpatchify)
from mask3d_vit.models.vit import (ENCODER_NAMES, build_encoder, check_image, normalize_rgb,
                                   set_attention_backend)

MICRO = dict(encoder="vit_micro_patch16", img_size=(32, 48), depth_dim=32, depth_heads=2, decoder_dim=32,
             decoder_depth=1, decoder_heads=2)


def micro(**kwargs) -> Mask3D:
    torch.manual_seed(0)
    return Mask3D(**{**MICRO, **kwargs})


def make_batch(b: int = 2, h: int = 32, w: int = 48, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)
    depth = 0.5 + 4 * torch.rand(b, 1, h, w, generator=g)
    return {"rgb": rgb, "depth": depth, "valid": torch.ones(b, 1, h, w, dtype=torch.bool)}


def run(model: Mask3D, batch: dict, seed: int = 123) -> dict:
    torch.manual_seed(seed)  # same seed -> same masks, so two batches can be compared
    return model(batch)


def constant_depth_head(model: Mask3D, value: float) -> None:
    """Make the depth head predict ``value`` everywhere, so the loss has a closed form."""
    with torch.no_grad():
        model.depth_head.weight.zero_()
        model.depth_head.bias.fill_(value)


# ---------------------------------------------------------------------------------------------------- encoder


def test_build_encoder_names_and_error():
    enc = build_encoder("vit_micro_patch16", img_size=(32, 48))
    assert (enc.embed_dim, len(enc.blocks), enc.num_classes) == (64, 2, 0)
    assert enc.pos_embed.shape == (1, 1 + 2 * 3, 64)
    assert set(ENCODER_NAMES) >= {"vit_tiny_patch16", "vit_small_patch16", "vit_base_patch16", "vit_large_patch16"}
    with pytest.raises(ValueError, match="unknown encoder 'vit_huge'.*vit_tiny_patch16"):
        build_encoder("vit_huge")


def test_encoder_accepts_any_grid():
    enc = build_encoder("vit_micro_patch16", img_size=(32, 32)).eval()
    assert enc.forward_features(torch.randn(1, 3, 48, 80)).shape == (1, 1 + 3 * 5, 64)


def test_normalize_rgb_uint8_and_float_agree():
    rgb = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    out = normalize_rgb(rgb)
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN), torch.tensor(IMAGENET_DEFAULT_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(out[0, :, 0, 1], (1 - mean) / std)
    torch.testing.assert_close(normalize_rgb(rgb.float() / 255), out)


def test_check_image_messages():
    check_image(torch.zeros(2, 3, 32, 48), 16)
    with pytest.raises(ValueError, match=r"^rgb is 3x100x128: height 100 is not divisible by the patch size 16; "
                                         r"resize or crop to a multiple of 16$"):
        check_image(torch.zeros(3, 100, 128), 16)
    with pytest.raises(ValueError, match="width 40 is not divisible"):
        check_image(torch.zeros(1, 3, 32, 40), 16)
    with pytest.raises(ValueError, match="rgb is 4x32x32: expected 3 channel"):
        check_image(torch.zeros(1, 4, 32, 32), 16)
    with pytest.raises(ValueError, match="depth is 3x32x32: expected 1 channel"):
        check_image(torch.zeros(1, 3, 32, 32), 16, name="depth", channels=1)


def test_attention_backend_switch_keeps_outputs():
    model = micro()
    set_attention_backend(model, "cuda")
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    assert len(flags) == 2 + 1 + 2 and all(flags)  # encoder, decoder and depth-branch blocks
    x = torch.randn(2, 3, 32, 48)
    fused = model.encoder.forward_features(x)
    set_attention_backend(model, torch.device("cpu"))
    assert not any(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
    torch.testing.assert_close(model.encoder.forward_features(x), fused, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- masking


def test_random_masking_counts_and_independence():
    torch.manual_seed(0)
    keep, mask = random_masking(8, 60, 0.75, "cpu")
    assert keep.shape == (8, 15) and mask.shape == (8, 60) and mask.dtype == torch.bool
    assert (mask.sum(1) == 45).all()
    assert not mask.gather(1, keep).any()
    assert (keep.diff(dim=1) > 0).all()  # raster order
    assert len({tuple(row.tolist()) for row in keep}) == 8  # every sample draws its own subset
    assert random_masking(2, 10, 0.99)[0].shape == (2, 1)  # at least one visible patch
    assert random_masking(2, 10, 0.0)[1].sum() == 0
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="mask ratio"):
            random_masking(2, 10, bad)


def test_random_masking_follows_global_rng_state():
    state = torch.get_rng_state()
    first = random_masking(4, 30, 0.5)[1]
    torch.set_rng_state(state)
    torch.testing.assert_close(random_masking(4, 30, 0.5)[1], first)


def test_rgb_and_depth_masks_are_independent():
    out = run(micro(), make_batch(b=4))
    assert out["rgb_mask"].shape == out["depth_mask"].shape == (4, 6)
    assert (out["rgb_mask"].sum(1) == 4).all() and (out["depth_mask"].sum(1) == 4).all()  # round(6 * 0.25) = 2 kept
    # Independence, statistically: over many frames each pair (visible colour set, visible depth set) of the 15 x 15
    # possible is about equally frequent. A depth mask derived from the colour one (equal, shifted, complemented)
    # concentrates the table on 15 cells.
    frames = 3000
    with torch.no_grad():
        out = run(micro().eval(), make_batch(b=frames))
    codes = torch.tensor([1, 2, 4, 8, 16, 32])
    rgb_set, depth_set = (~out["rgb_mask"]).long() @ codes, (~out["depth_mask"]).long() @ codes
    counts = torch.zeros(64, 64)
    counts.index_put_((rgb_set, depth_set), torch.ones(frames), accumulate=True)
    expected = counts.sum(1, keepdim=True) * counts.sum(0, keepdim=True) / frames
    seen = expected > 0
    chi2 = ((counts - expected)[seen] ** 2 / expected[seen]).sum().item()
    # 14 x 14 = 196 degrees of freedom: mean 196, sd 20. A derived mask gives about 14 x 3000 = 42000.
    assert int((counts > 0).sum()) == 225 and chi2 < 350, chi2
    # Visible patches shared by both masks: hypergeometric mean 2 * 2 / 6 (a shift by one patch gives 2 * 1 / 5).
    shared = ((~out["rgb_mask"]) & (~out["depth_mask"])).sum(1).float().mean().item()
    assert shared == pytest.approx(2 / 3, abs=0.06)


def test_block_masks_on_an_odd_grid_keep_whole_clipped_squares():
    # A 5x7 grid in 2x2 squares: the last row and column of squares are clipped to 2x1, 1x2 and 1x1 (12 squares of
    # 4, 2 or 1 patches). Every square is shown or hidden whole, except the one where the visible count runs out.
    torch.manual_seed(0)
    model = micro(mask_scheme="block", depth_mask_ratio=0.6)
    masks = model.draw_masks(200, (5, 7), "cpu")
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij")
    square = ((rows // 2) * 4 + cols // 2).reshape(35)
    visible = (~masks["depth_mask"]).float()
    shown = torch.zeros(200, 12).index_add_(1, square, visible)
    size = torch.zeros(12).index_add_(0, square, torch.ones(35))
    assert size.tolist() == [4, 4, 4, 2] * 2 + [2, 2, 2, 1]
    partial = ((shown > 0) & (shown < size)).sum(1)
    assert partial.le(1).all() and partial.eq(0).any()
    assert (masks["depth_keep"].shape == (200, 14)) and visible.sum(1).eq(14).all()  # round(35 * 0.4)
    # every patch, the clipped corner included, is shown in some frame
    assert visible.any(0).all()


def test_log_depth_prior_spreads_log_depth_and_skips_a_visible_patch_without_valid_pixels():
    # 2x2 grid: patches 0 and 1 visible, 2 and 3 hidden. Patch 0 is 2 m, patch 1 has no valid pixel (NaN, 0 m,
    # negative and flagged invalid), the hidden patches 7 m. With a zero correction every pixel is predicted what
    # spreading the one usable patch gives: log 2, in the log target's space (not 2: metres).
    model = micro(img_size=(32, 32), depth_prior="interpolation", depth_target="log").eval()
    constant_depth_head(model, 0.0)
    depth = torch.full((1, 1, 32, 32), 7.0)
    depth[..., :16, :16] = 2.0
    depth[..., :16, 16:] = torch.tensor([float("nan"), 0.0, -1.0, 3.0]).repeat(64).view(16, 16)
    valid = torch.ones_like(depth, dtype=torch.bool)
    valid[..., :16, 16:] &= depth[..., :16, 16:] != 3.0
    batch = {"rgb": torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "depth": depth, "valid": valid}
    masks = {"rgb_keep": torch.tensor([[0]]), "rgb_mask": torch.tensor([[False, True, True, True]]),
             "depth_keep": torch.tensor([[0, 1]]), "depth_mask": torch.tensor([[False, False, True, True]])}
    with torch.no_grad():
        out = model(batch, masks=masks)
    torch.testing.assert_close(out["pred_depth"], torch.full((1, 1, 32, 32), 2.0))
    # loss over the valid pixels: patch 0 exact, the hidden ones |log 2 - log 7| (256 + 512 pixels)
    assert out["loss_depth"].item() == pytest.approx(math.log(7 / 2) * 512 / 768, rel=1e-5)


@pytest.mark.parametrize("region", ["all", "masked", "depth_hidden"])
def test_loss_regions_average_valid_pixels_of_their_patches_in_log_space(region):
    # Log targets, invalid pixels spread unevenly over the patches (a whole patch, half of another, non-positive
    # readings flagged valid): the loss is the mean over the valid pixels of the region, not a mean of patch means.
    c = 0.3
    model = micro(loss_region=region, depth_target="log")
    constant_depth_head(model, c)
    batch = make_batch()
    batch["depth"][0, 0, :16, :16] = 0.0           # patch 0 of frame 0: no reading at all
    batch["depth"][1, 0, :8, 16:32] = -2.0         # half of patch 1 of frame 1: negative, yet flagged valid
    batch["valid"][0, 0, 16:, 32:40] = False       # half of patch 5 of frame 0: flagged invalid
    masks = {"rgb_keep": torch.tensor([[1, 3], [0, 4]]),
             "rgb_mask": torch.tensor([[1, 0, 1, 0, 1, 1], [0, 1, 1, 1, 0, 1]]).bool(),
             "depth_keep": torch.tensor([[2, 3], [1, 3]]),
             "depth_mask": torch.tensor([[1, 1, 0, 0, 1, 1], [1, 0, 1, 0, 1, 1]]).bool()}
    out = model(batch, masks=masks)
    patches = {"all": torch.ones(2, 6, dtype=torch.bool), "masked": masks["rgb_mask"],
               "depth_hidden": masks["depth_mask"]}[region]
    in_region = unpatchify(patches.float().unsqueeze(-1).expand(-1, -1, 256), 16, (2, 3)) > 0
    d = batch["depth"]
    scored = in_region & batch["valid"] & (d > 0)
    expected = (c - d[scored].log()).abs().mean()
    torch.testing.assert_close(out["loss_depth"], expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- model


def test_encoder_sees_exactly_the_visible_tokens():
    model = micro().eval()
    batch = make_batch(b=3)
    seen = []
    model.encoder.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    out = run(model, batch)
    tokens = seen[0]
    b, n, k, dim = 3, 6, 2, 64
    assert tokens.shape == (b, 1 + k, dim)
    enc = model.encoder
    with torch.no_grad():
        full = enc.patch_embed(normalize_rgb(batch["rgb"])).reshape(b, n, dim) + enc.pos_embed[:, 1:]
    torch.testing.assert_close(tokens[:, 1:], full[~out["rgb_mask"]].view(b, k, dim))
    torch.testing.assert_close(tokens[:, 0], (enc.cls_token + enc.pos_embed[:, :1]).detach()[0].expand(b, -1))


@pytest.mark.parametrize("size", [(32, 48), (48, 64), (64, 32)])
def test_non_square_and_off_nominal_sizes(size):
    out = run(micro(objective="rgb+depth"), make_batch(b=2, h=size[0], w=size[1]))
    n = (size[0] // 16) * (size[1] // 16)
    assert out["pred_depth"].shape == (2, 1, *size) and out["pred_rgb"].shape == (2, 3, *size)
    assert out["rgb_mask"].shape == (2, n)
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("kwargs", [dict(objective="depth"), dict(objective="rgb"), dict(objective="rgb+depth"),
                                    dict(depth_blocks=0), dict(depth_mask_ratio=1.0), dict(fusion="add"),
                                    dict(depth_target="standardized", loss="l2", loss_region="masked")])
def test_every_parameter_gets_a_gradient(kwargs):
    model = micro(**kwargs)
    out = run(model, make_batch())
    out["loss"].backward()
    assert out["loss"].requires_grad
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient (unused under DDP): {missing}"


def test_compiled_model_gives_the_eager_loss_with_its_graph(monkeypatch):
    """``train.compile=true`` runs the model through inductor: same loss as eager, and it must still backpropagate
    (a detached loss among the outputs once made inductor drop the graph of ``loss``)."""
    import torch._inductor.config
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)  # eager's RNG: the same masks
    model = micro(objective="rgb+depth")
    batch = make_batch()
    eager = run(model, batch)
    torch._dynamo.reset()
    compiled = run(torch.compile(model), batch)
    assert compiled["loss"].requires_grad
    for key in ("loss", "loss_depth", "loss_rgb"):
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5)
    compiled["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("fusion, extra", [("concat", 2), ("add", 0)])
def test_fusion_sets_the_decoder_sequence(fusion, extra):
    """concat: 1 class token + N grid tokens + the K visible depth tokens; add: the depth tokens join their patches."""
    model = micro(fusion=fusion, depth_mask_ratio=1 - extra / 6)  # 2x3 grid: K = extra visible depth patches
    lengths = []
    model.decoder_blocks[0].register_forward_hook(lambda _m, args, _out: lengths.append(args[0].shape[1]))
    run(model, make_batch())
    assert lengths == [1 + 6 + extra]


def test_add_fusion_uses_depth_only_at_visible_depth_patches():
    model = micro(fusion="add", decoder_depth=0)  # no attention: each patch's prediction sees only its own token
    batch = make_batch()
    base = run(model, batch)
    changed = {**batch, "depth": batch["depth"].clone()}
    changed["depth"] += 1.0
    out = run(model, changed)
    differs = (out["pred_depth"] != base["pred_depth"]).flatten(2).any(-1)  # (B, 1)
    assert differs.all()
    per_patch = patchify(out["pred_depth"] - base["pred_depth"], 16).abs().amax(-1) > 0  # (B, N)
    assert torch.equal(per_patch, ~out["depth_mask"])


def test_rgb_objective_builds_no_depth_modules():
    names = {n for n, _ in micro(objective="rgb").named_parameters()}
    assert not any(n.startswith(("depth_", "depth_branch")) for n in names)
    assert not any(n.startswith("depth_branch") for n, _ in micro(depth_mask_ratio=1.0).named_parameters())
    out = run(micro(objective="rgb"), {"rgb": make_batch()["rgb"]})  # no depth needed
    assert set(out) == {"loss", "loss_rgb", "pred_rgb", "rgb_mask"}


@pytest.mark.parametrize("target", ["metric", "log", "standardized"])
def test_invalid_depth_is_excluded(target):
    model = micro(depth_target=target)
    batch = make_batch()
    batch["depth"][0, 0, :8] = 0.0  # holes, as sensors report them
    batch["valid"][0, 0, :8] = False
    batch["valid"][1, 0, :, :10] = False  # flagged invalid by the dataset although the value looks fine
    reference = run(model, batch)["loss"]

    corrupted = {k: v.clone() for k, v in batch.items()}
    garbage = torch.tensor([float("nan"), float("inf"), -3.0, 0.0, 50.0])  # 50 m is beyond max_depth
    corrupted["depth"][0, 0, :8] = garbage.repeat(8 * 48 // 5 + 1)[:8 * 48].view(8, 48)
    corrupted["depth"][1, 0, :, :10] = float("nan")
    out = run(model, corrupted)
    torch.testing.assert_close(out["loss"], reference)
    assert torch.isfinite(out["pred_depth"]).all()
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    changed = {k: v.clone() for k, v in batch.items()}
    changed["depth"][1, 0, :, 20:30] += 1.0  # a valid region: must matter
    assert not torch.allclose(run(model, changed)["loss"], reference)


def test_depth_beyond_max_depth_and_missing_valid_key():
    model = micro(max_depth=4.0)
    batch = make_batch()
    del batch["valid"]
    reference = run(model, batch)["loss"]
    far = batch["depth"] >= 4.0
    assert far.any()
    batch["depth"][far] = 100.0
    torch.testing.assert_close(run(model, batch)["loss"], reference)


def test_frames_without_valid_depth_give_a_finite_zero_loss():
    model = micro()
    batch = make_batch()
    batch["depth"].zero_()
    out = run(model, batch)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    out["loss"].backward()
    batch = make_batch()
    batch["valid"][0] = False  # one frame without depth, one with
    out = run(model, batch)
    assert torch.isfinite(out["loss"]) and out["loss"] > 0


@pytest.mark.parametrize("target", ["metric", "log", "standardized"])
@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_depth_loss_closed_form(target, loss):
    c = 0.3
    model = micro(depth_target=target, loss=loss)
    constant_depth_head(model, c)
    batch = make_batch()
    batch["valid"][0, 0, :16] = False
    out = run(model, batch)
    d, v = batch["depth"], batch["valid"]
    if target == "metric":
        t = d
    elif target == "log":
        t = d.log()
    else:
        mean = torch.stack([d[i][v[i]].mean() for i in range(2)]).view(2, 1, 1, 1)
        std = torch.stack([d[i][v[i]].var(unbiased=False).sqrt() for i in range(2)]).view(2, 1, 1, 1)
        t = (d - mean) / std
    err = (c - t).abs() if loss == "l1" else (c - t) ** 2
    torch.testing.assert_close(out["loss"], err[v].mean(), rtol=1e-4, atol=1e-5)
    metres = {"metric": torch.full_like(d, c), "log": torch.full_like(d, math.exp(c))}.get(target)
    if target == "standardized":
        metres = (c * std + mean).expand_as(d)
    torch.testing.assert_close(out["pred_depth"], metres, rtol=1e-4, atol=1e-4)


def test_masked_loss_region_ignores_visible_patches():
    # Without depth input, the prediction depends on colour only, so target changes are isolated.
    batch = make_batch()
    for region, should_change in (("masked", False), ("all", True)):
        model = micro(loss_region=region, depth_mask_ratio=1.0)
        out = run(model, batch)
        visible = unpatchify((~out["rgb_mask"]).float().unsqueeze(-1).expand(-1, -1, 256), 16, (2, 3)) > 0
        changed = {k: v.clone() for k, v in batch.items()}
        changed["depth"][visible] += 2.0
        differs = not torch.allclose(run(model, changed)["loss"], out["loss"])
        assert differs == should_change, region


def test_masked_loss_region_closed_form():
    model = micro(loss_region="masked", depth_target="metric")
    constant_depth_head(model, 1.0)
    batch = make_batch()
    out = run(model, batch)
    hidden = unpatchify(out["rgb_mask"].float().unsqueeze(-1).expand(-1, -1, 256), 16, (2, 3)) > 0
    torch.testing.assert_close(out["loss"], (batch["depth"] - 1.0).abs()[hidden].mean())


def test_mae_rgb_loss_uses_hidden_patches_and_normalised_pixels():
    model = micro(objective="rgb")
    with torch.no_grad():
        model.rgb_head.weight.zero_()
        model.rgb_head.bias.zero_()
    batch = {"rgb": make_batch()["rgb"]}
    out = run(model, batch)
    # Zero prediction of a per-patch standardised target: loss = (n - 1) / n of the unbiased variance ratio.
    n = 16 * 16 * 3
    torch.testing.assert_close(out["loss"], torch.tensor((n - 1) / n), rtol=1e-3, atol=0)
    patch_means = patchify(batch["rgb"].float() / 255, 16).mean(-1, keepdim=True).expand(-1, -1, n)
    torch.testing.assert_close(out["pred_rgb"], unpatchify(patch_means, 16, (2, 3)))

    visible = unpatchify((~out["rgb_mask"]).float().unsqueeze(-1).expand(-1, -1, n), 16, (2, 3)) > 0
    changed = {"rgb": batch["rgb"].clone()}
    changed["rgb"][visible] = 0  # visible patches are not scored
    torch.testing.assert_close(run(model, changed)["loss"], out["loss"])


def test_rgb_loss_on_raw_pixels_closed_form_and_clamped_prediction():
    model = micro(objective="rgb", norm_pix_loss=False)
    gray = {"rgb": torch.full((2, 3, 32, 48), 127, dtype=torch.uint8)}
    for bias, image in ((0.2, 0.2), (5.0, 1.0), (-5.0, 0.0)):  # the prediction is shown clamped to [0, 1]
        with torch.no_grad():
            model.rgb_head.weight.zero_()
            model.rgb_head.bias.fill_(bias)
        out = run(model, gray)
        torch.testing.assert_close(out["loss"], torch.tensor((bias - 127 / 255) ** 2))
        assert torch.allclose(out["pred_rgb"], torch.full_like(out["pred_rgb"], image))
    # A float image in [0, 1] is the same image.
    torch.testing.assert_close(run(model, {"rgb": gray["rgb"].float() / 255})["loss"], out["loss"])
    # With norm_pix_loss the prediction is de-normalised with each target patch's statistics: pred * std + mean.
    model = micro(objective="rgb")
    with torch.no_grad():
        model.rgb_head.weight.zero_()
        model.rgb_head.bias.fill_(0.5)
    batch = {"rgb": make_batch()["rgb"]}
    patches = patchify(batch["rgb"].float() / 255, 16)
    expected = 0.5 * (patches.var(-1, keepdim=True) + 1e-6).sqrt() + patches.mean(-1, keepdim=True)
    torch.testing.assert_close(run(model, batch)["pred_rgb"],
                               unpatchify(expected.expand_as(patches), 16, (2, 3)).clamp(0, 1))


def test_depth_prediction_is_shown_between_0_and_max_depth():
    for target, value, shown in (("log", math.log(100.0), 10.0), ("metric", -1.0, 0.0)):
        model = micro(depth_target=target)
        constant_depth_head(model, value)
        out = run(model, make_batch())
        assert torch.allclose(out["pred_depth"], torch.full_like(out["pred_depth"], shown)), target


def test_standardized_target_of_a_flat_frame_is_finite():
    batch = make_batch()
    batch["depth"] = torch.full_like(batch["depth"], 2.0)  # a wall: zero variance
    out = run(micro(depth_target="standardized"), batch)
    assert torch.isfinite(out["loss"]) and torch.isfinite(out["pred_depth"]).all()


def test_rgb_plus_depth_loss_is_weighted_sum():
    out = run(micro(objective="rgb+depth", rgb_loss_weight=0.5), make_batch())
    torch.testing.assert_close(out["loss"], out["loss_depth"] + 0.5 * out["loss_rgb"])
    # The weight balances colour against depth: MAE-RGB's loss is its colour loss whatever the weight.
    batch = {"rgb": make_batch()["rgb"]}
    mae = run(micro(objective="rgb", rgb_mask_ratio=0.75, rgb_loss_weight=0.5), batch)
    torch.testing.assert_close(mae["loss"], mae["loss_rgb"])
    assert set(mae) >= {"pred_rgb", "rgb_mask"}


def test_without_depth_input_every_depth_patch_is_hidden():
    # depth_mask_ratio=1: no depth enters the model; the depth loss is over every patch.
    model = micro(depth_mask_ratio=1.0, loss_region="masked")
    masks = model.draw_masks(2, (2, 3))
    assert set(masks) == {"rgb_keep", "rgb_mask", "depth_mask"}
    assert masks["depth_mask"].dtype == torch.bool and masks["depth_mask"].shape == (2, 6)
    assert masks["depth_mask"].all()


def test_loss_falls_when_overfitting_a_few_frames():
    torch.manual_seed(0)
    model = micro(depth_mask_ratio=0.5)
    # Frames whose depth follows the colour (a tilted plane shaded by depth), so colour predicts depth.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    depth = torch.stack([1 + 2 * (a * yy + (1 - a) * xx) for a in (0.0, 0.3, 0.7, 1.0)]).unsqueeze(1)
    rgb = (depth / 3 * 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    batch = {"rgb": rgb, "depth": depth}
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses


# ---------------------------------------------------------------------------------------------------- inputs, config


def test_bf16_autocast_forward_backward():
    model = micro(objective="rgb+depth")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(model, make_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_inputs_raise_clear_errors():
    model = micro()
    batch = make_batch()
    with pytest.raises(ValueError, match=r"rgb must be a batch \(B, 3, H, W\), got shape \(3, 32, 48\)"):
        model({**batch, "rgb": batch["rgb"][0]})
    with pytest.raises(ValueError, match="rgb is 4x32x48: expected 3"):
        model({**batch, "rgb": torch.zeros(2, 4, 32, 48, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="height 40 is not divisible by the patch size 16"):
        model({"rgb": torch.zeros(2, 3, 40, 48, dtype=torch.uint8), "depth": torch.ones(2, 1, 40, 48)})
    with pytest.raises(ValueError, match=r"depth is 2x1x32x32 but rgb is 2x3x32x48.*same size"):
        model({**batch, "depth": torch.ones(2, 1, 32, 32)})
    with pytest.raises(ValueError, match="needs 'depth' in the batch"):
        model({"rgb": batch["rgb"]})
    with pytest.raises(ValueError, match="valid mask has shape"):
        model({**batch, "valid": torch.ones(2, 32, 48, dtype=torch.bool)})
    with pytest.raises(ValueError, match="no 'rgb' entry"):
        model({"depth": batch["depth"]})


@pytest.mark.parametrize("kwargs, message", [
    (dict(objective="depth+normals"), "objective='depth\\+normals' is not supported; choose one of depth, rgb"),
    (dict(depth_target="inverse"), "depth_target"), (dict(loss="huber"), "loss="),
    (dict(loss_region="visible"), "loss_region"), (dict(fusion="cross"), "fusion='cross'"), (dict(rgb_mask_ratio=1.0), "rgb_mask_ratio"),
    (dict(depth_mask_ratio=1.5), "depth_mask_ratio"), (dict(img_size=(40, 48)), "height 40 is not divisible"),
    (dict(decoder_dim=30), "decoder_dim=30"), (dict(depth_dim=30), "depth_dim=30"),
    (dict(max_depth=0.0), "max_depth"), (dict(encoder="resnet50"), "unknown encoder")])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Mask3D(**{**MICRO, **kwargs})


def test_config_matches_constructor_and_round_trips():
    signature = inspect.signature(Mask3D.__init__).parameters
    fields = {f.name: f.default for f in dataclasses.fields(Mask3DConfig)}
    assert fields == {name: p.default for name, p in signature.items() if name != "self"}
    cfg = from_dict(Mask3DConfig, to_dict(Mask3DConfig(**MICRO, objective="rgb+depth")))
    assert cfg.img_size == (32, 48)
    model = Mask3D.from_config(cfg)
    assert model.predicts_rgb and model.predicts_depth


def test_no_weight_decay_names_exist():
    model = micro()
    names = model.no_weight_decay()
    assert names == {"encoder.pos_embed", "encoder.cls_token", "mask_token", "rgb_type_embed", "depth_type_embed"}
    assert names <= dict(model.named_parameters()).keys()


def test_named_factory_builds_the_recipe():
    model = mask3d_vit_tiny_patch16_dec128d2b(img_size=(32, 32), depth_blocks=0)
    assert model.encoder.embed_dim == 192 and len(model.decoder_blocks) == 2
    assert model.decoder_embed.out_features == 128 and len(model.depth_branch.blocks) == 0


def test_grad_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    model = micro()
    batch = make_batch(2, 32, 48)
    grads, saved = [], []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        torch.manual_seed(1)
        model.zero_grad()
        stored = []  # bytes of every tensor autograd keeps for backward
        with torch.autograd.graph.saved_tensors_hooks(lambda t: stored.append(t.nbytes) or t, lambda t: t):
            out = model(batch)
        saved.append(sum(stored))
        out["loss"].backward()
        grads.append((out["loss"].detach(), [p.grad.clone() for p in model.parameters()]))
    # Checkpointing ran: the blocks' activations are recomputed in backward instead of kept (micro model: ~3.4x less).
    assert saved[1] < 0.5 * saved[0], saved
    torch.testing.assert_close(grads[1][0], grads[0][0])
    assert len(grads[0][1]) == len(grads[1][1]) == len(list(model.parameters()))
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
