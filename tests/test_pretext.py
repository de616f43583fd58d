"""Pretext diagnostics (rgb_reliance, vs_interpolation, loss by patch category) and the masking schemes they judge."""
from __future__ import annotations

import math

import pytest
import torch

from mask3d_vit.engine.data import seeded_rng
from mask3d_vit.eval.pretext import PretextDiagnostics, diagnose, patch_categories
from mask3d_vit.models.mask3d import Mask3D, interpolate_visible_depth, patchify

MICRO = dict(encoder="vit_micro_patch16", img_size=(32, 32), depth_dim=32, depth_heads=2, decoder_dim=32,
             decoder_depth=1, decoder_heads=2, depth_target="metric")


def colour_coded_batch(b: int, seed: int) -> dict:
    """Frames of one flat colour whose grey level gives the frame's constant depth: depth is knowable from colour
    alone, and not from position."""
    g = torch.Generator().manual_seed(seed)
    level = torch.rand(b, generator=g)
    rgb = (level * 255).round().to(torch.uint8).view(b, 1, 1, 1).expand(b, 3, 32, 32).contiguous()
    depth = (1.0 + 4.0 * level).view(b, 1, 1, 1).expand(b, 1, 32, 32).contiguous()
    return {"rgb": rgb, "depth": depth, "valid": torch.ones(b, 1, 32, 32, dtype=torch.bool)}


def test_categories_partition_the_grid():
    g = torch.Generator().manual_seed(0)
    rgb_mask, depth_mask = torch.rand(4, 20, generator=g) < 0.7, torch.rand(4, 20, generator=g) < 0.6
    cats = patch_categories(rgb_mask, depth_mask)
    total = sum(c.int() for c in cats.values())
    assert torch.equal(total, torch.ones(4, 20, dtype=torch.int))
    assert torch.equal(cats["rgb_only"], depth_mask & ~rgb_mask)


def test_interpolation_baseline_by_hand():
    # A 1x2 grid of 2-pixel patches: the left patch is visible with target 1, the right one hidden. With one
    # visible patch every pixel gets its value; with both visible the weights follow 1 / (d + 0.5)^2.
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0]]).view(1, 1, 2, 4)
    valid = torch.ones_like(target, dtype=torch.bool)
    one = interpolate_visible_depth(target, valid, torch.tensor([[False, True]]), patch_size=2)
    torch.testing.assert_close(one, torch.ones(1, 2, 4))
    both = interpolate_visible_depth(target, valid, torch.tensor([[False, False]]), patch_size=2)
    # pixel (0.5, 0.5): distance 0.7071 to the left centre (1, 1), 2.5495 to the right one (1, 3)
    w1, w2 = (math.sqrt(0.5) + 0.5) ** -2, (math.sqrt(0.25 + 6.25) + 0.5) ** -2
    assert both[0, 0, 0].item() == pytest.approx((w1 * 1 + w2 * 3) / (w1 + w2), rel=1e-5)
    # invalid pixels do not enter a patch's mean, and a frame without visible depth is predicted 0
    valid[0, 0, :, 0] = False
    target[0, 0, :, 0] = 100.0
    torch.testing.assert_close(interpolate_visible_depth(target, valid, torch.tensor([[False, True]]), 2),
                               torch.ones(1, 2, 4))
    assert interpolate_visible_depth(target, valid, torch.tensor([[True, True]]), 2).abs().max() == 0


def test_a_decoder_that_ignores_colour_has_rgb_reliance_one():
    torch.manual_seed(0)
    model = Mask3D(**MICRO, depth_mask_ratio=0.5).eval()
    with torch.no_grad():  # encoder features never reach the decoder
        model.decoder_embed.weight.zero_()
    out = diagnose(model, [colour_coded_batch(6, seed=1)])
    assert out["rgb_reliance"] == pytest.approx(1.0, abs=1e-6)
    assert out["loss_depth_hidden"] > 0


def test_a_decoder_that_reads_colour_has_rgb_reliance_above_one():
    # Trained on frames whose depth is given by their colour, with no depth input: the only way down is colour.
    torch.manual_seed(0)
    model = Mask3D(**MICRO, depth_mask_ratio=1.0, rgb_mask_ratio=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(150):
        loss = model(colour_coded_batch(16, seed=step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = diagnose(model.eval(), [colour_coded_batch(16, seed=10_000)])
    assert out["rgb_reliance"] > 2.0
    assert math.isnan(out["vs_interpolation"])  # no depth input: nothing to interpolate


def test_diagnostics_score_each_category_under_the_seeded_masks_and_lose_to_an_exact_interpolation():
    # A depth head predicting 0 m: a patch's error is its frame's constant depth, whatever the colour, so each
    # category's loss is the mean depth of its patches under the masks the seed draws, and swapping colour changes
    # nothing. Spreading the visible patches of a constant frame is exact: the model loses to it.
    torch.manual_seed(0)
    model = Mask3D(**MICRO, depth_mask_ratio=0.5).eval()
    with torch.no_grad():
        model.depth_head.weight.zero_()
        model.depth_head.bias.zero_()
    batch = colour_coded_batch(16, seed=3)
    out = diagnose(model, [batch], seed=7)
    with seeded_rng(7):
        masks = model.draw_masks(16, (2, 2), "cpu")
    frame_depth = batch["depth"][:, 0, 0, :1].expand(16, 4)  # (B, N): every patch of a frame has its depth
    rgb_hidden, hidden = masks["rgb_mask"], masks["depth_mask"]
    cats = {"depth_visible": ~hidden, "rgb_only": hidden & ~rgb_hidden, "both_hidden": hidden & rgb_hidden}
    assert cats["rgb_only"].any() and cats["both_hidden"].any() and cats["depth_visible"].any()
    for name, where in (*cats.items(), ("depth_hidden", hidden)):
        expected = frame_depth[where].mean().item()
        assert out[f"loss_{name}"] == pytest.approx(expected, rel=1e-5), name
        assert out[f"loss_{name}_swapped"] == pytest.approx(expected, rel=1e-5), name
        assert out[f"loss_{name}_interp"] < 1e-6, name
    assert out["rgb_reliance"] == pytest.approx(1.0, rel=1e-6)
    assert out["vs_interpolation"] == pytest.approx(out["loss_depth_hidden"] / out["loss_depth_hidden_interp"])
    assert out["vs_interpolation"] > 1e5
    assert diagnose(model, [batch], seed=7) == out  # same seed, same masks, same figures


def test_compute_turns_error_sums_into_category_losses_and_ratios():
    # (error sum, pixel count) per variant and category, as update() accumulates them.
    sums = {"model/depth_visible": (1.0, 4.0), "model/rgb_only": (6.0, 2.0), "model/both_hidden": (2.0, 2.0),
            "swapped/depth_visible": (1.0, 4.0), "swapped/rgb_only": (12.0, 2.0), "swapped/both_hidden": (4.0, 2.0),
            "interp/depth_visible": (0.0, 4.0), "interp/rgb_only": (1.0, 2.0), "interp/both_hidden": (15.0, 2.0)}
    keys = sorted(sums)
    out = PretextDiagnostics.compute(keys, torch.tensor([sums[k] for k in keys], dtype=torch.float64))
    assert out["loss_depth_visible"] == 0.25 and out["loss_rgb_only"] == 3.0 and out["loss_both_hidden"] == 1.0
    assert out["loss_depth_hidden"] == 2.0 and out["loss_depth_hidden_swapped"] == 4.0
    assert out["loss_rgb_only_swapped"] == 6.0 and out["loss_depth_hidden_interp"] == 4.0
    assert out["rgb_reliance"] == 2.0 and out["vs_interpolation"] == 0.5
    # without depth input there is no interpolation: its figures are NaN, the others unchanged
    keys = [k for k in keys if not k.startswith("interp/")]
    out = PretextDiagnostics.compute(keys, torch.tensor([sums[k] for k in keys], dtype=torch.float64))
    assert math.isnan(out["loss_depth_hidden_interp"]) and math.isnan(out["vs_interpolation"])
    assert out["rgb_reliance"] == 2.0


def test_diagnostics_need_two_frames_to_swap_colour():
    model = Mask3D(**MICRO).eval()
    with pytest.raises(ValueError, match=">= 2 frames"):
        diagnose(model, [colour_coded_batch(1, seed=0)])


def test_complementary_masks_never_show_colour_and_depth_of_one_patch():
    torch.manual_seed(0)
    model = Mask3D(**MICRO, mask_scheme="complementary", rgb_mask_ratio=0.75, depth_mask_ratio=0.75)
    masks = model.draw_masks(64, (4, 4), "cpu")
    assert not (~masks["rgb_mask"] & ~masks["depth_mask"]).any()
    assert (~masks["depth_mask"]).sum(1).eq(4).all() and (~masks["rgb_mask"]).sum(1).eq(4).all()
    # the visible depth patches are still random among the colour-hidden ones: every position gets shown
    assert (~masks["depth_mask"]).any(0).all()
    indep = Mask3D(**MICRO, rgb_mask_ratio=0.75, depth_mask_ratio=0.75).draw_masks(64, (4, 4), "cpu")
    assert (~indep["rgb_mask"] & ~indep["depth_mask"]).any()


def test_block_masks_show_and_hide_depth_in_whole_squares():
    torch.manual_seed(0)
    model = Mask3D(**MICRO, mask_scheme="block", rgb_mask_ratio=0.75, depth_mask_ratio=0.75)
    masks = model.draw_masks(64, (6, 8), "cpu")
    # 2x2 squares of a 6x8 grid: 12 squares; 25 % visible = 3 squares, each shown whole
    squares = masks["depth_mask"].view(64, 3, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(64, 12, 4)
    assert squares.all(-1).logical_or(~squares.any(-1)).all()
    assert (~squares.any(-1)).sum(1).eq(3).all()
    assert masks["depth_keep"].shape == (64, 12) and (~masks["depth_mask"]).any(0).all()
    assert (~masks["rgb_mask"]).sum(1).eq(12).all()


def test_depth_hidden_loss_region_scores_only_patches_without_depth_input():
    torch.manual_seed(0)
    model = Mask3D(**MICRO, loss_region="depth_hidden", depth_mask_ratio=0.5)
    batch = colour_coded_batch(2, seed=0)
    batch["depth"] = 1.0 + torch.arange(32.0).view(1, 1, 1, 32).expand(2, 1, 32, 32) / 8  # differs by patch
    prepared, grid = model.prepare_batch(batch)
    masks = model.draw_masks(2, grid, "cpu")
    with torch.no_grad():
        model.depth_head.weight.zero_()
        model.depth_head.bias.zero_()  # predicts 0 m: the error of a patch is its depth
    loss = model(batch, masks=masks)["loss_depth"]
    per_patch = patchify(prepared["depth"], 16).mean(-1)
    assert loss.item() == pytest.approx(per_patch[masks["depth_mask"]].mean().item(), rel=1e-5)
    assert loss.item() != pytest.approx(per_patch.mean().item(), rel=1e-3)


def test_evaluator_logs_the_diagnostics(tmp_path):
    from mask3d_vit.eval.pretext import ReconstructionEvaluator

    class Frames(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {k: v[0] for k, v in colour_coded_batch(1, seed=i).items()}

    torch.manual_seed(0)
    model = Mask3D(**MICRO).eval()
    metrics = ReconstructionEvaluator(Frames(), batch_size=4, num_batches=2, device=torch.device("cpu"))(model)
    for key in ("val_loss", "val_rgb_reliance", "val_vs_interpolation", "val_loss_rgb_only",
                "val_loss_both_hidden_swapped", "val_loss_depth_visible_interp"):
        assert key in metrics and math.isfinite(metrics[key]), key
    keys, sums = PretextDiagnostics().state()
    assert keys == [] and sums.shape == (0, 2)


def test_diagnose_command_on_a_pretraining_run(tmp_path, capsys):
    from mask3d_vit.cli import main
    from mask3d_vit.config import load_config, to_dict
    from mask3d_vit.tasks.compare import MAE_RGB
    from mask3d_vit.tasks.pretrain import PretrainConfig, run_pretrain

    overrides = ["data.sources=[{format: synthrooms, num_frames: 8, seed: 0}]", "data.size=[32,48]",
                 "model.encoder=vit_micro_patch16", "model.img_size=[32,48]", "model.decoder_dim=32",
                 "model.depth_dim=32", "train.epochs=1", "train.batch_size=4", "train.precision=fp32", "val_batches=1"]
    assert main(["pretrain", "--out", str(tmp_path / "run"), *overrides]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]  # the headline figures, not every patch category
    assert "eval/val_rgb_reliance=" in summary and "eval/val_vs_interpolation=" in summary
    assert "_swapped" not in summary and "val_loss_rgb_only" not in summary
    assert main(["diagnose", str(tmp_path / "run"), "--batches", "1", "--batch-size", "4"]) == 0
    text = capsys.readouterr().out
    assert "rgb_reliance = " in text and "| rgb_only |" in text
    cfg = load_config(PretrainConfig, "pretrain_synth_tiny", overrides)
    mae = load_config(PretrainConfig, None, MAE_RGB, base=to_dict(cfg))
    run_pretrain(mae, tmp_path / "mae")
    assert main(["diagnose", str(tmp_path / "mae")]) == 1
    assert "predicts no depth" in capsys.readouterr().err


def test_interpolation_prior_is_the_start_of_the_depth_prediction():
    torch.manual_seed(0)
    model = Mask3D(**MICRO, depth_prior="interpolation", depth_mask_ratio=0.5).eval()
    with torch.no_grad():
        model.depth_head.weight.zero_()
        model.depth_head.bias.zero_()
    batch = colour_coded_batch(4, seed=2)
    batch["depth"] = batch["depth"] + torch.arange(32.0).view(1, 1, 1, 32) / 16
    out = diagnose(model, [batch])
    # a zero correction is exactly the baseline, whatever the colour
    assert out["loss_depth_hidden"] == pytest.approx(out["loss_depth_hidden_interp"], rel=1e-5)
    assert out["vs_interpolation"] == pytest.approx(1.0, rel=1e-5) and out["rgb_reliance"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="depth_mask_ratio < 1"):
        Mask3D(**MICRO, depth_prior="interpolation", depth_mask_ratio=1.0)
    with pytest.raises(ValueError, match="standardized"):
        Mask3D(**{**MICRO, "depth_target": "standardized"}, depth_prior="interpolation")


def test_evaluator_loss_is_the_frame_weighted_mean_over_uneven_batches():
    from mask3d_vit.eval.pretext import ReconstructionEvaluator

    # Frames carry their id, a string, as every dataset's do: only tensors go to the device.
    frames = [{**{k: v[0] for k, v in colour_coded_batch(1, seed=i).items()}, "frame_id": f"f{i}"} for i in range(7)]
    torch.manual_seed(0)
    model = Mask3D(**MICRO).eval()
    # 7 frames in batches of 2 (the smallest the diagnostics allow): chunks of 2, 2, 2 and 1 frame, each loss a mean
    # over its own frames.
    metrics = ReconstructionEvaluator(frames, batch_size=2, num_batches=4, device=torch.device("cpu"))(model)
    losses = []
    with torch.no_grad(), seeded_rng(1234):  # the evaluator's fixed masks, drawn batch after batch
        for chunk in ([0, 1], [2, 3], [4, 5], [6]):
            batch = torch.utils.data.default_collate([frames[i] for i in chunk])
            _, grid = model.prepare_batch(batch)
            masks = model.draw_masks(len(chunk), grid, torch.device("cpu"))
            losses.append((model(batch, masks=masks)["loss"].item(), len(chunk)))
    assert len({loss for loss, _ in losses}) == 4  # the chunks differ, so a wrong weighting shows
    expected = sum(loss * n for loss, n in losses) / 7
    assert metrics["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["val_loss"] != pytest.approx(sum(loss for loss, _ in losses) / 4, rel=1e-4)


def test_evaluator_of_an_objective_without_depth_logs_no_diagnostics():
    from mask3d_vit.eval.pretext import ReconstructionEvaluator

    frames = [{k: v[0] for k, v in colour_coded_batch(1, seed=i).items()} for i in range(4)]
    torch.manual_seed(0)
    model = Mask3D(**{**MICRO, "objective": "rgb", "rgb_mask_ratio": 0.75}).eval()
    metrics = ReconstructionEvaluator(frames, batch_size=2, num_batches=2, device=torch.device("cpu"))(model)
    assert "val_loss" in metrics and math.isfinite(metrics["val_loss"])
    assert not [k for k in metrics if "reliance" in k or "interp" in k or "swapped" in k], metrics


def test_figures_of_a_perfect_decoder_are_undefined_and_absent_categories_add_nothing():
    # A decoder with zero error where depth was hidden: rgb_reliance (swapped / true) and vs_interpolation
    # (model / interpolation, here also exact) have no meaning; both_hidden patches absent from every variant.
    keys = ["model/rgb_only", "swapped/rgb_only", "interp/rgb_only"]
    sums = torch.tensor([[0.0, 10.0], [5.0, 10.0], [0.0, 10.0]], dtype=torch.float64)
    out = PretextDiagnostics.compute(keys, sums)
    assert out["loss_depth_hidden"] == 0.0 and out["loss_depth_hidden_swapped"] == 0.5
    assert math.isnan(out["loss_both_hidden"])
    assert math.isnan(out["rgb_reliance"]) and math.isnan(out["vs_interpolation"])


def test_evaluator_diagnostics_add_every_batch_of_two_under_its_own_masks():
    from mask3d_vit.eval.pretext import ReconstructionEvaluator

    # 7 frames in batches of 2: three batches of 2 carry the diagnostics (the last, 1 frame, cannot swap colour).
    # Against diagnose() on the same three batches and the same seeded masks: a category's sums replaced instead of
    # added, batches of 2 skipped, or frames grouped in threes (other swap partners) all change the figures.
    frames = [{k: v[0] for k, v in colour_coded_batch(1, seed=i).items()} for i in range(7)]
    torch.manual_seed(0)
    model = Mask3D(**MICRO).eval()
    metrics = ReconstructionEvaluator(frames, batch_size=2, num_batches=4, device=torch.device("cpu"))(model)
    batches = [torch.utils.data.default_collate(frames[i:i + 2]) for i in (0, 2, 4)]
    expected = diagnose(model, batches, seed=1234)
    last_only = diagnose(model, batches[-1:], seed=1234)
    keys = [f"loss_{c}{s}" for c in ("depth_visible", "rgb_only", "both_hidden", "depth_hidden")
            for s in ("", "_swapped", "_interp")] + ["rgb_reliance", "vs_interpolation"]
    for key in keys:
        assert metrics[f"val_{key}"] == pytest.approx(expected[key], rel=1e-5), key
    assert metrics["val_loss_depth_hidden_swapped"] != pytest.approx(last_only["loss_depth_hidden_swapped"], rel=1e-3)


def test_interpolation_matches_a_pixel_by_pixel_reference_on_an_asymmetric_grid():
    # A 2x3 grid of 2-pixel patches with different means: a visible patch with a single valid pixel (its mean is
    # that pixel), a visible one with none (not used), a hidden one. Every pixel against the definition, computed
    # here one pixel and one patch at a time.
    g = torch.Generator().manual_seed(8)
    p, h, w = 2, 4, 6
    target = torch.rand(1, 1, h, w, generator=g) * 5
    valid = torch.ones(1, 1, h, w, dtype=torch.bool)
    valid[0, 0, 0:2, 2:4] = False
    valid[0, 0, 0, 2] = True                      # patch 1: one valid pixel
    valid[0, 0, 2:4, 0:2] = False                 # patch 3: none
    depth_mask = torch.tensor([[False, False, True, False, False, False]])
    out = interpolate_visible_depth(target, valid, depth_mask, patch_size=p)
    means, centres = [], []
    for n in range(6):
        i, j = divmod(n, 3)
        cell = (slice(i * p, (i + 1) * p), slice(j * p, (j + 1) * p))
        ok = valid[0, 0][cell]
        if depth_mask[0, n] or not ok.any():
            continue
        means.append(target[0, 0][cell][ok].mean().item())
        centres.append(((i + 0.5) * p, (j + 0.5) * p))
    assert len(means) == 4 and means[1] == target[0, 0, 0, 2].item()
    expected = torch.zeros(h, w)
    for y in range(h):
        for x in range(w):
            weights = [(math.dist((y + 0.5, x + 0.5), c) + 0.5) ** -2 for c in centres]
            expected[y, x] = sum(wt * m for wt, m in zip(weights, means)) / sum(weights)
    torch.testing.assert_close(out, patchify(expected.view(1, 1, h, w), p), rtol=1e-5, atol=1e-6)
