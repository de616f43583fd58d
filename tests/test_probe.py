"""The closed-form probe: it reaches the least-squares optimum, recovers a planted map, chooses its ridge strength
on held-out frames, reads the final normed features, and the CLI prints it beside the floors."""
from __future__ import annotations

import json
import math

import pytest
import torch

from mask3d_vit.cli import build_parser
from mask3d_vit.eval import baselines
from mask3d_vit.eval.probe import (RidgeSums, cell_targets, cells_to_image, choose_ridge, fit_probe,
                                   format_report, load_ceiling, load_probe_encoder, mean_squared_error,
                                   patch_features, probe_backbone, ridge_solutions, solve_ridge)
from mask3d_vit.models.vit import build_encoder, normalize_rgb
from mask3d_vit.tasks import finetune


def masked_problem(rows=300, dim=6, cells=3, outputs=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, dim, generator=g, dtype=torch.float64)
    y = torch.randn(rows, cells, outputs, generator=g, dtype=torch.float64)
    mask = torch.rand(rows, cells, generator=g) < 0.7
    return x, y, mask


def test_unregularised_fit_is_the_per_cell_least_squares_optimum():
    x, y, mask = masked_problem()
    sums = RidgeSums()
    for part in torch.arange(len(x)).chunk(4):           # accumulation over batches = one big solve
        sums.update(x[part], y[part], mask[part])
    w = solve_ridge(sums, 0.0)
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    for s in range(y.shape[1]):
        rows = mask[:, s]
        expected = torch.linalg.lstsq(x1[rows], y[rows, s]).solution
        assert torch.allclose(w[s], expected, atol=1e-9), s
    # The held-out error formula from the sums equals the direct mean over valid cells.
    pred = torch.einsum("rd,sdc->rsc", x1, w)
    direct = ((pred - y) ** 2)[mask].mean()
    assert mean_squared_error(sums, w) == pytest.approx(float(direct), rel=1e-9)


def test_ridge_shrinks_weights_but_not_the_bias():
    x, y, mask = masked_problem()
    sums = RidgeSums()
    sums.update(x, y + 5.0, mask)
    w = solve_ridge(sums, 1e6)
    assert w[:, :-1].abs().max() < 1e-4
    # With the weights gone the bias is each cell's mean target, not shrunk towards 0.
    for s in range(y.shape[1]):
        assert torch.allclose(w[s, -1], (y + 5.0)[mask[:, s], s].mean(0), atol=1e-3)


def test_ridge_strength_is_relative_to_the_feature_scale():
    # alpha is in units of the mean feature variance: features 100x larger get weights 100x smaller, same fit.
    x, y, mask = masked_problem()
    small, large = RidgeSums(), RidgeSums()
    small.update(x, y, mask)
    large.update(100 * x, y, mask)
    w_small, w_large = solve_ridge(small, 0.5), solve_ridge(large, 0.5)
    assert torch.allclose(w_large[:, :-1] * 100, w_small[:, :-1]) and torch.allclose(w_large[:, -1], w_small[:, -1])


def test_ridge_choice_follows_the_held_out_error():
    g = torch.Generator().manual_seed(1)
    dim = 40

    def sums_of(x, y):
        s = RidgeSums()
        s.update(x, y[:, None, None], torch.ones(len(x), 1, dtype=torch.bool))
        return s

    # Clean planted signal: no reason to shrink.
    a = torch.randn(dim, generator=g, dtype=torch.float64)
    x_fit, x_held = (torch.randn(n, dim, generator=g, dtype=torch.float64) for n in (200, 100))
    alpha, errors = choose_ridge(sums_of(x_fit, x_fit @ a), sums_of(x_held, x_held @ a))
    assert alpha <= 1e-3 and errors[alpha] < 1e-6
    # Pure noise, few rows per feature: every weight fit is overfitting, so the strongest shrinkage wins.
    x_fit, x_held = (torch.randn(n, dim, generator=g, dtype=torch.float64) for n in (50, 200))
    noise_fit, noise_held = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(200, generator=g,
                                                                                           dtype=torch.float64)
    alpha, errors = choose_ridge(sums_of(x_fit, noise_fit), sums_of(x_held, noise_held))
    assert alpha >= 1.0 and errors[alpha] < errors[0.0]


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return build_encoder("vit_micro_patch16", img_size=(32, 48)).eval()


def images(n, seed):
    return torch.randint(0, 256, (n, 3, 32, 48), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_features_are_after_the_final_norm(micro):
    x = patch_features(micro, images(2, 0))
    assert x.shape == (2, 2 * 3, 64)
    # LayerNorm output with the default affine (1, 0): zero mean, unit variance per token.
    assert torch.allclose(x.mean(-1), torch.zeros(2, 6), atol=1e-5)
    assert torch.allclose(x.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-3)


def test_a_layer_is_that_block_through_the_final_norm_and_the_last_is_forward_features(micro):
    rgb = images(2, 0)
    x = normalize_rgb(rgb)
    assert torch.equal(patch_features(micro, rgb, -1), micro.forward_features(x)[:, micro.num_prefix_tokens:])
    # By hand: patch embedding, position embedding, block 0 only, then the final norm.
    tokens = micro.norm_pre(micro._pos_embed(micro.patch_embed(x)))
    first = micro.norm(micro.blocks[0](tokens))[:, micro.num_prefix_tokens:]
    assert torch.allclose(patch_features(micro, rgb, 0), first, atol=1e-6)
    assert torch.equal(patch_features(micro, rgb, -2), patch_features(micro, rgb, 0))   # 2 blocks: -2 is block 0
    assert not torch.allclose(patch_features(micro, rgb, 0), patch_features(micro, rgb, 1), atol=1e-3)
    for bad in (2, -3):
        with pytest.raises(ValueError) as caught:
            patch_features(micro, rgb, bad)
        assert str(caught.value) == (f"layer={bad} is not a block of this 2-block encoder: choose 0..1 or -2..-1 "
                                     "(-1 = the last)")


def test_cell_layout_round_trips_at_full_resolution():
    y = torch.randn(2, 6, 16 * 16, 1, dtype=torch.float64)
    image = cells_to_image(y, grid=(2, 3), cells=16, patch=16, size=(32, 48))
    batch = {"depth": image.exp(), "valid": torch.ones(2, 1, 32, 48, dtype=torch.bool)}
    back, mask = cell_targets(batch, task="depth", patch=16, cells=16)
    assert mask.all() and torch.allclose(back, y, atol=1e-5)


def planted_depth_batches(encoder, seeds, weights, bias, features=None):
    """Batches whose log depth is exactly a linear function of ``features(rgb)`` (default: the encoder's last
    normed patch tokens; one value per pixel)."""
    features = features or (lambda rgb: patch_features(encoder, rgb))
    out = []
    for seed in seeds:
        rgb = images(4, seed)
        scores = torch.einsum("bnd,sd->bns", features(rgb).double(), weights) + bias
        log_depth = cells_to_image(scores[..., None], grid=(2, 3), cells=16, patch=16, size=(32, 48))
        valid = torch.ones(4, 1, 32, 48, dtype=torch.bool)
        valid[:, :, :3] = False                          # invalid pixels carry garbage the fit must not see
        depth = torch.where(valid, log_depth.exp(), 1e4)
        out.append({"rgb": rgb, "depth": depth, "valid": valid})
    return out


def test_probe_recovers_a_planted_linear_map(micro):
    g = torch.Generator().manual_seed(2)
    weights = 0.1 * torch.randn(256, 64, generator=g, dtype=torch.float64)
    bias = 1.0 + 0.1 * torch.randn(256, generator=g, dtype=torch.float64)
    train = planted_depth_batches(micro, range(6), weights, bias)
    probe = fit_probe(micro, train, task="depth", cells=16, holdout_every=0, alphas=[0.0])
    # Cells sampled in invalid rows 0..2 never enter the fit; all others must match the planted map. LayerNorm'd
    # tokens sum to 0, so weights are defined up to a constant added to all of them: compare them centred.
    def centred(w):
        return w - w.mean(-1, keepdim=True)
    assert torch.allclose(centred(probe.weights[16 * 3:, :-1, 0]), centred(weights[16 * 3:]), atol=1e-4)
    assert torch.allclose(probe.weights[16 * 3:, -1, 0], bias[16 * 3:], atol=1e-4)
    val = planted_depth_batches(micro, [10], weights, bias)[0]
    pred = probe.predict(micro, val["rgb"])
    assert torch.allclose(pred[:, :, 3:], val["depth"][:, :, 3:], rtol=1e-3)


def test_probe_fits_and_predicts_from_the_layer_it_is_given(micro):
    g = torch.Generator().manual_seed(3)
    weights = 0.1 * torch.randn(256, 64, generator=g, dtype=torch.float64)
    bias = 1.0 + 0.1 * torch.randn(256, generator=g, dtype=torch.float64)
    first = lambda rgb: patch_features(micro, rgb, 0)                               # noqa: E731
    train = planted_depth_batches(micro, range(6), weights, bias, features=first)
    val = planted_depth_batches(micro, [10], weights, bias, features=first)[0]
    errors = {}
    for layer in (0, -1):
        probe = fit_probe(micro, train, task="depth", cells=16, holdout_every=0, alphas=[0.0], layer=layer)
        assert probe.layer == layer
        errors[layer] = (probe.predict(micro, val["rgb"]) / val["depth"] - 1)[:, :, 3:].abs().max().item()
    # The map is planted on block 0: read there it is recovered exactly, read from the last block it is not.
    assert errors[0] < 1e-3 < 0.01 < errors[-1]
    with pytest.raises(ValueError, match="layer=5"):
        fit_probe(micro, train, task="depth", layer=5)


def test_probe_backbone_scores_probe_and_floors_alike(micro):
    g = torch.Generator().manual_seed(3)
    weights = 0.1 * torch.randn(256, 64, generator=g, dtype=torch.float64)
    bias = torch.ones(256, dtype=torch.float64)
    train = planted_depth_batches(micro, range(6), weights, bias)
    val = planted_depth_batches(micro, [10, 11], weights, bias)
    result = probe_backbone(micro, train, val, task="depth", cells=16, holdout_every=3, max_depth=1e5)
    assert result["probe"]["abs_rel"] < 1e-3 and result["probe"]["delta1"] == pytest.approx(100.0)
    assert result["alpha"] <= 1e-3 and set(result["heldout_mse"]) == {0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0}
    floors = baselines.depth_floors(train, val, max_depth=1e5)
    for kind in ("constant", "position"):
        assert result[kind]["abs_rel"] == pytest.approx(floors[kind]["abs_rel"])
    report = format_report(result, ceiling={"abs_rel": 0.5, "delta1": 40.0}, ceiling_name="runs/sup")
    assert "floor: position only" in report and "ceiling: supervised (runs/sup)" in report
    with pytest.raises(ValueError, match="one-shot iterator"):
        probe_backbone(micro, iter(train), val, task="depth")


def test_segmentation_probe_separates_classes_its_features_encode(micro):
    # Class 1 where a planted linear score of the token is clearly positive, class 2 where clearly negative,
    # unlabelled in the margin between: separable with room to spare, which least squares on one-hot targets finds.
    direction = torch.randn(64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def batch(seed):
        rgb = images(8, seed)
        score = patch_features(micro, rgb).double() @ direction                       # (B, 6)
        token = torch.where(score > 1.0, 1, torch.where(score < -1.0, 2, 0))
        return {"rgb": rgb, "label": token.view(8, 2, 3).repeat_interleave(16, 1).repeat_interleave(16, 2)}

    result = probe_backbone(micro, [batch(s) for s in range(6)], [batch(20)], task="seg", num_classes=2, cells=4)
    assert result["probe"]["pixel_acc"] > 90.0
    assert result["probe"]["miou"] > result["position"]["miou"] + 20
    assert len(result["probe"]["iou"]) == 2
    report = format_report(result, class_names=("unlabeled", "left", "right"))
    assert "floor: constant ('" in report and "| left |" in report and "| right |" in report


def cli(*argv):
    args = build_parser().parse_args([str(a) for a in argv])
    args.func(args)


TOY = ["data.sources=[{format: synthrooms, num_frames: 10, seed: 0}]", "data.size=[32, 48]",
       "encoder=vit_micro_patch16", "img_size=[32, 48]", "device=cpu", "batch_size=5", "max_images=4"]


def test_probe_cli_prints_the_probe_beside_floors_and_ceiling(tmp_path, capsys):
    weights = tmp_path / "encoder.pth"
    torch.manual_seed(5)
    torch.save(build_encoder("vit_micro_patch16", img_size=32).state_dict(), weights)
    ceiling = tmp_path / "eval_val.json"
    ceiling.write_text(json.dumps({"task": "depth", "abs_rel": 0.2, "rmse": 0.5, "delta1": 70.0}))
    cli("probe", "depth", "--out", tmp_path / "run", "--init-from", weights, "--ceiling", ceiling, *TOY)
    printed = capsys.readouterr().out
    for row in ("floor: constant", "floor: position only", "probe: closed-form ridge", "ceiling: supervised"):
        assert row in printed, row
    saved = json.loads((tmp_path / "run" / "probe.json").read_text())
    assert saved["task"] == "depth" and saved["ceiling"]["delta1"] == 70.0 and saved["probe"]["images"] == 4
    assert (tmp_path / "run" / "probe.md").read_text() in printed
    # The probe read the given weights: through the API the same weights give the same numbers, a scratch encoder
    # other ones, and the floors do not depend on the encoder at all.
    cfg = finetune.load_config(finetune.ProbeConfig, "probe_synth_depth", ["task=depth", *TOY])
    again = finetune.run_probe(finetune.dataclasses.replace(cfg, init_from=str(weights)))
    scratch = finetune.run_probe(cfg)
    assert again["probe"]["abs_rel"] == pytest.approx(saved["probe"]["abs_rel"])
    assert scratch["probe"]["abs_rel"] != pytest.approx(saved["probe"]["abs_rel"])
    assert scratch["position"]["abs_rel"] == pytest.approx(saved["position"]["abs_rel"])


def test_probe_config_layer_reaches_the_probe_and_its_report(tmp_path, capsys):
    cli("probe", "depth", "--out", tmp_path / "run", *TOY, "layer=0")
    saved = json.loads((tmp_path / "run" / "probe.json").read_text())
    assert saved["layer"] == 0 and "probe: closed-form ridge (alpha=" in capsys.readouterr().out
    assert ", block 0) |" in (tmp_path / "run" / "probe.md").read_text()
    cfg = finetune.load_config(finetune.ProbeConfig, "probe_synth_depth", ["task=depth", *TOY])
    last = finetune.run_probe(cfg)
    assert last["layer"] == -1 and ", block" not in last["report"]
    assert last["probe"]["abs_rel"] != pytest.approx(saved["probe"]["abs_rel"])
    assert last["position"]["abs_rel"] == pytest.approx(saved["position"]["abs_rel"])
    with pytest.raises(finetune.ConfigError, match=r"layer=2 is not a block of this 2-block encoder.*vit_micro"):
        finetune.run_probe(finetune.dataclasses.replace(cfg, layer=2))


def test_probe_cli_rejects_a_ceiling_of_the_other_task(tmp_path):
    ceiling = tmp_path / "eval_val.json"
    ceiling.write_text(json.dumps({"task": "seg", "miou": 50.0}))
    with pytest.raises(ValueError, match="not 'depth'"):
        cli("probe", "depth", "--out", tmp_path / "run", "--ceiling", ceiling, *TOY)


def test_probe_backbone_defaults_are_the_documented_ones(micro):
    # Depths around 10.5 m straddle the default scored range's end (10 m); 24 frames make the default hold-out
    # (every 5th frame) differ from any other.
    g = torch.Generator().manual_seed(6)
    weights = 0.05 * torch.randn(256, 64, generator=g, dtype=torch.float64)
    bias = torch.full((256,), math.log(10.5), dtype=torch.float64)
    train = planted_depth_batches(micro, range(6), weights, bias)
    val = planted_depth_batches(micro, [10, 11], weights, bias)
    result = probe_backbone(micro, train, val, task="depth")
    probe = fit_probe(micro, train, task="depth", cells=4, holdout_every=5)
    assert result["cells"] == 4 and result["alpha"] == probe.alpha and result["heldout_mse"] == probe.heldout_mse
    floors = baselines.depth_floors(train, val, min_depth=1e-3, max_depth=10.0)
    for kind in ("constant", "position"):
        assert result[kind]["abs_rel"] == pytest.approx(floors[kind]["abs_rel"]), kind
    expected = baselines.score({"probe": lambda b: probe.predict(micro, b["rgb"])}, val, task="depth",
                               min_depth=1e-3, max_depth=10.0)["probe"]
    assert result["probe"]["abs_rel"] == pytest.approx(expected["abs_rel"])
    # A given scored range reaches every predictor: from 9 m on, fewer pixels count.
    narrow = probe_backbone(micro, train, val, task="depth", min_depth=9.0)
    floors = baselines.depth_floors(train, val, min_depth=9.0, max_depth=10.0)
    assert narrow["position"]["abs_rel"] == pytest.approx(floors["position"]["abs_rel"])
    assert narrow["position"]["abs_rel"] != pytest.approx(result["position"]["abs_rel"])
    # The hold-out and the strengths given reach the probe.
    chosen = probe_backbone(micro, train, val, task="depth", holdout_every=3, alphas=[0.0, 1.0])
    assert chosen["heldout_mse"] == fit_probe(micro, train, task="depth", holdout_every=3, alphas=[0.0, 1.0]).heldout_mse
    # Segmentation has no default class count: without one, every label is out of range.
    with pytest.raises(ValueError, match=r"label ids must lie in 0\.\.0; found 1\.\.1"):
        probe_backbone(micro, [{"rgb": images(2, 0), "label": torch.ones(2, 32, 48, dtype=torch.long)}], [],
                       task="seg")
    with pytest.raises(ValueError) as one_shot:
        probe_backbone(micro, iter(train), val, task="depth")
    assert str(one_shot.value) == ("train is a one-shot iterator; pass a DataLoader or a list: the floors and the "
                                   "probe each read the training frames once")


def test_load_probe_encoder_is_frozen_at_the_given_size():
    encoder = load_probe_encoder("vit_micro_patch16", img_size=(32, 48))
    assert tuple(encoder.patch_embed.img_size) == (32, 48) and encoder.pos_embed.shape[1] == 6 + 1
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training


def test_ridge_sums_add_every_statistic():
    x, y, mask = masked_problem()
    a, b, whole = RidgeSums(), RidgeSums(), RidgeSums()
    a.update(x[:100], y[:100], mask[:100])
    b.update(x[100:], y[100:], mask[100:])
    whole.update(x, y, mask)
    total = a + b
    assert torch.allclose(total.gram, whole.gram) and torch.allclose(total.cross, whole.cross)
    assert total.yy == pytest.approx(whole.yy) and total.count == whole.count == int(mask.sum()) * 2
    assert (RidgeSums() + a) is a and (a + RidgeSums()) is a


def test_ridge_ties_go_to_the_stronger_ridge_and_an_empty_grid_is_refused():
    # Features without variance: every strength gives the same (bias-only) fit, so every held-out error ties.
    fit, held = RidgeSums(), RidgeSums()
    y = torch.randn(40, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    fit.update(torch.ones(30, 3), y[:30], torch.ones(30, 1, dtype=torch.bool))
    held.update(torch.ones(10, 3), y[30:], torch.ones(10, 1, dtype=torch.bool))
    best, errors = choose_ridge(fit, held, [0.0, 0.1, 1.0])
    assert len(set(errors.values())) == 1 and best == 1.0
    with pytest.raises(ValueError) as empty:
        choose_ridge(fit, held, [])
    assert str(empty.value) == "no ridge strengths to choose from"


def test_load_ceiling_reads_a_run_folder_or_its_file_of_the_same_task(tmp_path):
    (tmp_path / "eval_val.json").write_text(json.dumps({"task": "depth", "abs_rel": 0.2}))
    (tmp_path / "eval_test.json").write_text(json.dumps({"task": "depth", "abs_rel": 0.3}))
    assert load_ceiling(tmp_path, "depth")["abs_rel"] == 0.2  # the default split is val
    assert load_ceiling(tmp_path, "depth", split="test")["abs_rel"] == 0.3
    assert load_ceiling(tmp_path / "eval_test.json", "depth")["abs_rel"] == 0.3
    with pytest.raises(FileNotFoundError) as missing:
        load_ceiling(tmp_path, "depth", split="train")
    assert str(missing.value) == (f"ceiling {tmp_path}: no eval_train.json (give a fine-tuning run directory that has "
                                  "been evaluated on split 'train', or its eval_<split>.json)")
    with pytest.raises(ValueError) as other:
        load_ceiling(tmp_path, "seg")
    assert str(other.value) == f"ceiling {tmp_path / 'eval_val.json'} is a 'depth' evaluation, not 'seg'"


def test_format_report_prints_each_row_and_value_as_documented():
    depth = {"task": "depth", "alpha": 0.01,
             "constant": {"abs_rel": 0.5, "rmse": 1.25, "delta1": 30.04, "abs_rel_med": 0.4, "delta1_med": 50.0,
                          "constant_m": 2.345},
             "position": {"abs_rel": 0.41234, "rmse": 1.0, "delta1": 35.55, "abs_rel_med": float("nan"),
                          "delta1_med": 60.0},
             "probe": {"abs_rel": 0.3, "rmse": 0.9, "delta1": 40.0, "abs_rel_med": 0.25, "delta1_med": 70.0}}
    assert format_report(depth, ceiling={"abs_rel": 0.1, "delta1": 90.0}, ceiling_name="runs/sup") == (
        "| predictor | AbsRel | RMSE | delta1 | AbsRel (median-scaled) | delta1 (median-scaled) |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        "| floor: constant (2.35 m) | 0.500 | 1.250 | 30.0 | 0.400 | 50.0 |\n"
        "| floor: position only | 0.412 | 1.000 | 35.5 | - | 60.0 |\n"
        "| probe: closed-form ridge (alpha=0.01) | 0.300 | 0.900 | 40.0 | 0.250 | 70.0 |\n"
        "| ceiling: supervised (runs/sup) | 0.100 | - | 90.0 | - | - |\n")
    seg = {"task": "seg", "alpha": 1.0,
           "constant": {"miou": 10.0, "macc": 20.0, "pixel_acc": 30.0, "iou": [20.0, 0.0], "constant_class": 1},
           "position": {"miou": 15.0, "macc": 25.0, "pixel_acc": 35.0, "iou": [25.0, 5.0]},
           "probe": {"miou": 50.0, "macc": 60.0, "pixel_acc": 70.0, "iou": [60.0, 40.0]}}
    assert format_report(seg, ceiling={"miou": 80.0, "iou": [90.0]}) == (
        "| predictor | mIoU | mAcc | pixel acc |\n"
        "|---|---:|---:|---:|\n"
        "| floor: constant (class 1) | 10.0 | 20.0 | 30.0 |\n"
        "| floor: position only | 15.0 | 25.0 | 35.0 |\n"
        "| probe: closed-form ridge (alpha=1) | 50.0 | 60.0 | 70.0 |\n"
        "| ceiling: supervised | 80.0 | - | - |\n")
    assert format_report(seg, class_names=("unlabeled", "floor", "wall")) == (
        "| predictor | mIoU | mAcc | pixel acc |\n"
        "|---|---:|---:|---:|\n"
        "| floor: constant ('floor') | 10.0 | 20.0 | 30.0 |\n"
        "| floor: position only | 15.0 | 25.0 | 35.0 |\n"
        "| probe: closed-form ridge (alpha=1) | 50.0 | 60.0 | 70.0 |\n"
        "\nIoU per class:\n\n"
        "| class | constant | position | probe |\n"
        "|---|---:|---:|---:|\n"
        "| floor | 20.0 | 25.0 | 60.0 |\n"
        "| wall | 0.0 | 5.0 | 40.0 |\n")
    with_ceiling = format_report(seg, ceiling={"miou": 80.0, "iou": [90.0]}, class_names=("unlabeled", "a", "b"))
    assert with_ceiling.endswith("| class | constant | position | probe | ceiling |\n|---|---:|---:|---:|---:|\n"
                                 "| a | 20.0 | 25.0 | 60.0 | 90.0 |\n| b | 0.0 | 5.0 | 40.0 | - |\n")
    with pytest.raises(ValueError) as names:
        format_report(seg, class_names=("unlabeled", "a"))
    assert str(names.value) == "2 class names (with 'unlabeled') for 2 classes"


def test_fit_probe_names_a_bad_argument_and_accepts_the_smallest_good_ones(micro):
    depth = planted_depth_batches(micro, range(2), torch.zeros(256, 64, dtype=torch.float64),
                                  torch.ones(256, dtype=torch.float64))
    for kwargs, message in (({"task": "normals"}, "unknown task 'normals'; choose one of depth, seg"),
                            ({"task": "seg"}, "segmentation needs num_classes >= 1, got 0"),
                            ({"task": "depth", "cells": 0}, "cells=0 must divide the patch size 16"),
                            ({"task": "depth", "cells": 3}, "cells=3 must divide the patch size 16")):
        with pytest.raises(ValueError) as caught:
            fit_probe(micro, depth, **kwargs)
        assert str(caught.value) == message
    # One class, one cell per patch: the smallest valid probes.
    seg = [{"rgb": b["rgb"], "label": torch.ones(4, 32, 48, dtype=torch.long)} for b in depth]
    assert fit_probe(micro, seg, task="seg", num_classes=1, cells=1, holdout_every=0, alphas=[0.0]).weights.shape == (
        1, 65, 1)
    assert fit_probe(micro, depth, task="depth", cells=1, holdout_every=0, alphas=[0.0]).cells == 1
    # Defaults: 4 x 4 cells, every 5th frame held out (8 frames: the 5th), the ridge grid.
    default = fit_probe(micro, depth, task="depth")
    explicit = fit_probe(micro, depth, task="depth", cells=4, holdout_every=5)
    assert default.weights.shape == (16, 65, 1) and default.heldout_mse == explicit.heldout_mse
    assert default.heldout_mse != fit_probe(micro, depth, task="depth", holdout_every=6).heldout_mse


def test_cell_targets_sample_each_cell_centre_and_leave_out_what_has_no_target():
    # Patch 4, 2 x 2 cells of 2 pixels: cell (a, b) of a patch reads pixel (1 + 2a, 1 + 2b) of it. A 6 x 7 image
    # pads to 8 x 8: cells on row 7 or column 7 are padding and have no target.
    depth = torch.arange(1.0, 43.0).view(1, 1, 6, 7)
    valid = torch.ones(1, 1, 6, 7, dtype=torch.bool)
    valid[0, 0, 1, 1] = False                     # patch 0, cell (0, 0): invalid
    depth[0, 0, 1, 3] = 0.0                       # patch 0, cell (0, 1): flagged valid, but no reading
    y, mask = cell_targets({"depth": depth, "valid": valid}, task="depth", patch=4, cells=2)
    assert y.shape == (1, 4, 4, 1) and mask.shape == (1, 4, 4)
    expected_mask = torch.tensor([[[False, False, True, True], [True, False, True, False],
                                   [True, True, False, False], [True, False, False, False]]])
    assert torch.equal(mask, expected_mask)
    for n, a, b in ((0, 1, 0), (1, 1, 0), (2, 0, 1), (3, 0, 0)):
        i, j = divmod(n, 2)
        assert y[0, n, 2 * a + b, 0].item() == pytest.approx(math.log(depth[0, 0, 4 * i + 1 + 2 * a,
                                                                                 4 * j + 1 + 2 * b].item()))
    assert (y[~mask] == 0).all()  # cells without a target hold 0, never enter a sum
    # Segmentation: one-hot over the K classes (here 3, though only 1 and 2 occur); 0 = unlabelled; padding too.
    label = torch.tensor([[3, 3, 3, 3, 3, 3, 3], [1, 1, 2, 2, 0, 0, 1], [2, 2, 1, 1, 1, 1, 2],
                          [2, 2, 1, 1, 1, 1, 2], [1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 2, 2, 2]]).view(1, 6, 7)
    y, mask = cell_targets({"label": label}, task="seg", patch=4, cells=2, num_classes=3)
    assert y.shape == (1, 4, 4, 3)
    assert torch.equal(mask[0, 1], torch.tensor([False, False, True, False]))  # (1, 5) is 0; column 7 is padding
    assert y[0, 0, 0].tolist() == [1.0, 0.0, 0.0] and y[0, 0, 1].tolist() == [0.0, 1.0, 0.0]
    assert y[0, 1, 0].sum() == 0 and y[0, 3, 3].sum() == 0


def test_cells_to_image_crops_the_padding_to_the_image_size():
    scores = torch.randn(1, 4, 4, 1, dtype=torch.float64)
    assert cells_to_image(scores, grid=(2, 2), cells=2, patch=4, size=(6, 7)).shape == (1, 1, 6, 7)


def ridge_reference(x, y, alpha):
    """Ridge with an unpenalised bias, one output cell, straight from the definition: centred normal equations
    with the penalty alpha x the mean feature variance."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    cov, cov_xy = xc.T @ xc / len(x), xc.T @ yc / len(x)
    w = torch.linalg.solve(cov + alpha * torch.diagonal(cov).mean() * torch.eye(x.shape[1], dtype=x.dtype), cov_xy)
    return torch.cat([w, y.mean(0, keepdim=True) - x.mean(0, keepdim=True) @ w])


def test_ridge_solutions_follow_the_definition_per_cell_at_any_feature_scale():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(200, 4, generator=g, dtype=torch.float64)
    y = torch.randn(200, 2, 1, generator=g, dtype=torch.float64)
    # Cell 0 sees the features, cell 1 the same features at 1e-6 of the scale (variance 1e-12: not a null
    # direction); the penalty follows each cell's own variance.
    for scale in (1.0, 1e-6, 1e4):
        sums = RidgeSums()
        sums.update(x * scale, y[:, :1], torch.ones(200, 1, dtype=torch.bool))
        sums_small = RidgeSums()
        sums_small.update(x * scale * 1e-6, y[:, 1:], torch.ones(200, 1, dtype=torch.bool))
        both = RidgeSums(torch.cat([sums.gram, sums_small.gram]), torch.cat([sums.cross, sums_small.cross]),
                         sums.yy + sums_small.yy, sums.count + sums_small.count)
        for alpha in (0.0, 0.5):
            w = solve_ridge(both, alpha)
            torch.testing.assert_close(w[0], ridge_reference(x * scale, y[:, 0], alpha), rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(w[1], ridge_reference(x * scale * 1e-6, y[:, 1], alpha), rtol=1e-6,
                                       atol=1e-9 / (scale * 1e-6))
    # A cell seen by one row: predicted that row's value (no variance: the bias alone).
    one = RidgeSums()
    one.update(x[:1], torch.full((1, 1, 1), 3.0, dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool))
    assert solve_ridge(one, 0.0)[0, -1, 0].item() == pytest.approx(3.0)
    for sums, alphas, message in ((RidgeSums(), [0.0], "no training rows were accumulated; the probe cannot be fit"),
                                  (one, [0.1, -1.0], "ridge strengths must be >= 0, got [0.1, -1.0]")):
        with pytest.raises(ValueError) as caught:
            ridge_solutions(sums, alphas)
        assert str(caught.value) == message


def test_redundant_features_get_the_minimum_norm_fit_at_any_scale():
    g = torch.Generator().manual_seed(10)
    base = torch.randn(100, 2, generator=g, dtype=torch.float64)
    y = (base @ torch.tensor([1.0, -2.0], dtype=torch.float64) + 0.5)[:, None, None]
    for scale in (1.0, 1e4):
        x = torch.cat([base, base.sum(1, keepdim=True)], 1) * scale      # third feature = first + second
        sums = RidgeSums()
        sums.update(x, y, torch.ones(100, 1, dtype=torch.bool))
        w = solve_ridge(sums, 0.0)[0, :, 0]
        torch.testing.assert_close(x @ w[:-1] + w[-1], y[:, 0, 0], rtol=1e-6, atol=1e-6)
        expected = torch.linalg.pinv(x - x.mean(0)) @ (y[:, 0, 0] - y.mean())   # the minimum-norm weights
        torch.testing.assert_close(w[:-1], expected, rtol=1e-5, atol=1e-9)


def test_the_held_out_frames_are_every_nth_counted_across_batches(micro):
    # 12 frames in batches of 4; every 5th frame is held out: frames 4 and 9.
    g = torch.Generator().manual_seed(11)
    batches = planted_depth_batches(micro, range(3), 0.1 * torch.randn(256, 64, generator=g, dtype=torch.float64),
                                    torch.ones(256, dtype=torch.float64))
    probe = fit_probe(micro, batches, task="depth", holdout_every=5, alphas=[0.0, 1.0])
    fit, held = RidgeSums(), RidgeSums()
    for k, batch in enumerate(batches):
        x = patch_features(micro, batch["rgb"])
        y, mask = cell_targets(batch, task="depth", patch=16, cells=4)
        out = torch.tensor([4 * k + i in (4, 9) for i in range(4)])
        fit.update(x[~out].flatten(0, 1), y[~out].flatten(0, 1), mask[~out].flatten(0, 1))
        held.update(x[out].flatten(0, 1), y[out].flatten(0, 1), mask[out].flatten(0, 1))
    assert probe.heldout_mse == pytest.approx(choose_ridge(fit, held, [0.0, 1.0])[1])
    # No hold-out: with holdout_every 0 or 1, or a single strength (which is then used); a hold-out of every 2nd
    # frame chooses between 2 strengths.
    for every, alphas in ((0, [0.0, 1.0]), (1, [0.0, 1.0]), (5, [0.5])):
        single = fit_probe(micro, batches, task="depth", holdout_every=every, alphas=alphas)
        assert single.heldout_mse == {} and single.alpha == alphas[0]
    assert set(fit_probe(micro, batches, task="depth", holdout_every=2, alphas=[0.0, 1.0]).heldout_mse) == {0.0, 1.0}
    with pytest.raises(ValueError) as few:
        fit_probe(micro, batches[:1][:1], task="depth", holdout_every=5)
    assert str(few.value) == ("no held-out frame with targets (every 5th of 4 frames): use more frames or "
                              "holdout_every=0 with a single ridge strength")
