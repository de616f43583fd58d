"""The closed-form probe: it reaches the least-squares optimum, recovers a planted map, chooses its ridge strength
on held-out frames, reads the final normed features, and the CLI prints it beside the floors."""
from __future__ import annotations

import json

import pytest
import torch

from mask3d_vit.cli import build_parser
from mask3d_vit.eval import baselines
from mask3d_vit.eval.probe import (RidgeSums, cell_targets, cells_to_image, choose_ridge, fit_probe,
                                   format_report, mean_squared_error, patch_features,
                                   probe_backbone, solve_ridge)
from mask3d_vit.models.vit import build_encoder
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


def test_cell_layout_round_trips_at_full_resolution():
    y = torch.randn(2, 6, 16 * 16, 1, dtype=torch.float64)
    image = cells_to_image(y, grid=(2, 3), cells=16, patch=16, size=(32, 48))
    batch = {"depth": image.exp(), "valid": torch.ones(2, 1, 32, 48, dtype=torch.bool)}
    back, mask = cell_targets(batch, task="depth", patch=16, cells=16)
    assert mask.all() and torch.allclose(back, y, atol=1e-5)


def planted_depth_batches(encoder, seeds, weights, bias):
    """Batches whose log depth is exactly a linear function of the encoder's patch tokens (one value per pixel)."""
    out = []
    for seed in seeds:
        rgb = images(4, seed)
        scores = torch.einsum("bnd,sd->bns", patch_features(encoder, rgb).double(), weights) + bias
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


def test_probe_cli_rejects_a_ceiling_of_the_other_task(tmp_path):
    ceiling = tmp_path / "eval_val.json"
    ceiling.write_text(json.dumps({"task": "seg", "miou": 50.0}))
    with pytest.raises(ValueError, match="not 'depth'"):
        cli("probe", "depth", "--out", tmp_path / "run", "--ceiling", ceiling, *TOY)
