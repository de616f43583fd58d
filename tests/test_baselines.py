"""The image-blind floors against hand-computed values: what is fit, what is left out, how it is scored."""
from __future__ import annotations

import pytest
import torch

from mask3d_vit.eval.baselines import (depth_floors, fit_depth_floors, fit_position_depth, fit_position_seg,
                                       fit_seg_floors, score, seg_floors)

# Two 1x2 training frames. Pixel (0, 0): 1 m and 4 m (geometric mean 2 m); pixel (0, 1): 8 m valid, the other
# frame's 100 m is flagged invalid and must not count.
DEPTHS = torch.tensor([[[[1.0, 8.0]]], [[[4.0, 100.0]]]])
VALIDS = torch.tensor([[[[True, True]]], [[[True, False]]]])


def test_position_depth_is_per_pixel_geometric_mean_of_valid_pixels():
    assert torch.allclose(fit_position_depth(DEPTHS, VALIDS), torch.tensor([[2.0, 8.0]]))


def test_constant_depth_is_geometric_mean_over_all_valid_pixels():
    floors = fit_depth_floors([{"depth": DEPTHS[:1], "valid": VALIDS[:1]}, {"depth": DEPTHS[1:], "valid": VALIDS[1:]}])
    assert floors.constant == pytest.approx((1.0 * 8.0 * 4.0) ** (1 / 3))
    # Batching does not change the fit.
    assert torch.allclose(floors.position, fit_position_depth(DEPTHS, VALIDS))


def test_position_never_valid_falls_back_to_constant():
    valids = torch.tensor([[[[True, False]]], [[[True, False]]]])
    floors = fit_depth_floors([{"depth": DEPTHS, "valid": valids}])
    assert floors.constant == pytest.approx(2.0)
    assert torch.allclose(floors.position, torch.tensor([[2.0, 2.0]]))


def test_depth_floors_scored_with_the_depth_meter():
    train = [{"depth": DEPTHS, "valid": VALIDS}]
    # One validation frame: 2 m and 4 m. Position floor predicts 2 and 8 -> AbsRel (0 + 1) / 2; the constant
    # 32 ** (1/3) = 3.17 m gives (|3.17 - 2| / 2 + |3.17 - 4| / 4) / 2.
    val = [{"depth": torch.tensor([[[[2.0, 4.0]]]]), "valid": torch.ones(1, 1, 1, 2, dtype=torch.bool)}]
    out = depth_floors(train, val, max_depth=10.0)
    c = 32 ** (1 / 3)
    assert out["position"]["abs_rel"] == pytest.approx(0.5)
    assert out["position"]["delta1"] == pytest.approx(50.0)
    assert out["constant"]["abs_rel"] == pytest.approx(((c - 2) / 2 + (4 - c) / 4) / 2)
    assert out["constant"]["constant_m"] == pytest.approx(c)


def test_depth_floor_rejects_no_valid_pixel_and_size_mismatch():
    with pytest.raises(ValueError, match="^no valid depth pixel in the training frames"):
        fit_depth_floors([{"depth": DEPTHS, "valid": torch.zeros_like(VALIDS)}])
    val = [{"depth": torch.ones(1, 1, 2, 2), "valid": torch.ones(1, 1, 2, 2, dtype=torch.bool)}]
    with pytest.raises(ValueError, match="^a validation depth map is 2x2 .W x H. but the floors were fit at 2x1"):
        depth_floors([{"depth": DEPTHS, "valid": VALIDS}], val)


# Three 2x2 training frames, classes 1..3, 0 = unlabeled:
#   (0,0): 1, 1, 2 -> 1     (0,1): 2, 3, 3 -> 3     (1,0): 0, 0, 0 -> never labelled -> constant
#   (1,1): 2, 3, 0 -> tie between 2 and 3 -> the lower id, 2.   Totals: 1 x2, 2 x3, 3 x3 -> constant 2 (tie, lower).
LABELS = torch.tensor([[[1, 2], [0, 2]], [[1, 3], [0, 3]], [[2, 3], [0, 0]]])


def test_position_seg_is_per_pixel_mode_ignoring_unlabeled():
    floors = fit_seg_floors([{"label": LABELS}], 3)
    assert floors.constant == 2
    assert torch.equal(floors.position, torch.tensor([[1, 3], [2, 2]]))
    assert torch.equal(fit_position_seg(LABELS, 3), floors.position)


def test_seg_floors_scored_with_per_class_iou():
    val = [{"label": torch.tensor([[[1, 3], [2, 1]]])}]
    out = seg_floors([{"label": LABELS[:2]}, {"label": LABELS[2:]}], val, num_classes=3)
    # position predicts [[1, 3], [2, 2]]: three of four right; class 1: TP 1, FN 1 -> IoU 1/2; class 2: TP 1, FP 1
    # -> 1/2; class 3: 1/1.
    assert out["position"]["pixel_acc"] == pytest.approx(75.0)
    assert out["position"]["iou"] == pytest.approx([50.0, 50.0, 100.0])
    # constant predicts 2 everywhere: one of four right; class 1 and 3 IoU 0, class 2 1/4.
    assert out["constant"]["pixel_acc"] == pytest.approx(25.0)
    assert out["constant"]["iou"] == pytest.approx([0.0, 25.0, 0.0])
    assert out["constant"]["miou"] == pytest.approx(25.0 / 3)


def test_seg_floor_rejects_bad_ids():
    with pytest.raises(ValueError, match="0..3"):
        fit_seg_floors([{"label": LABELS + 1}], 3)
    with pytest.raises(ValueError, match="3x1"):
        seg_floors([{"label": LABELS}], [{"label": torch.ones(1, 1, 3, dtype=torch.long)}], num_classes=3)


def test_depth_floors_leave_out_non_positive_depth_flagged_valid():
    # Pixel (0, 0): 0.5 m and a 0 m reading flagged valid; pixel (0, 1): 8 m and -3 m flagged valid. Only the
    # positive readings count: position (0.5, 8), constant sqrt(0.5 * 8) = 2.
    depths = torch.tensor([[[[0.5, 8.0]]], [[[0.0, -3.0]]]])
    floors = fit_depth_floors([{"depth": depths, "valid": torch.ones_like(depths, dtype=torch.bool)}])
    assert floors.constant == pytest.approx(2.0)
    assert torch.allclose(floors.position, torch.tensor([[0.5, 8.0]]))


def test_floors_predict_their_values_at_the_batch_shape():
    floors = fit_depth_floors([{"depth": DEPTHS, "valid": VALIDS}])
    batch = {"depth": torch.zeros(3, 1, 1, 2)}
    assert torch.equal(floors.predict("position", batch), torch.tensor([[2.0, 8.0]]).expand(3, 1, 1, 2))
    assert torch.allclose(floors.predict("constant", batch), torch.full((3, 1, 1, 2), 32 ** (1 / 3)))
    seg = fit_seg_floors([{"label": LABELS}], 3)
    assert torch.equal(seg.predict("constant", {"label": torch.zeros(2, 2, 2, dtype=torch.long)}),
                       torch.full((2, 2, 2), 2))
    with pytest.raises(ValueError, match="unknown floor 'median'; choose one of constant, position$"):
        floors.predict("median", batch)


def test_training_frames_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="a training depth map is 3x1 .* fit at 2x1"):
        fit_depth_floors([{"depth": DEPTHS, "valid": VALIDS},
                          {"depth": torch.ones(1, 1, 1, 3), "valid": torch.ones(1, 1, 1, 3, dtype=torch.bool)}])
    with pytest.raises(ValueError, match="a training label map is 3x2 .* fit at 2x2"):
        fit_seg_floors([{"label": LABELS}, {"label": torch.ones(1, 2, 3, dtype=torch.long)}], 3)


def test_seg_floor_rejects_negative_ids_and_no_labelled_pixel():
    with pytest.raises(ValueError, match=r"0\.\.3; found -1\.\.2"):
        fit_seg_floors([{"label": LABELS - 1}], 3)
    with pytest.raises(ValueError, match="^no labelled pixel in the training frames"):
        fit_seg_floors([{"label": torch.zeros(2, 2, 2, dtype=torch.long)}], 3)


def test_floors_fit_over_batches_of_several_frames_equal_one_fit():
    g = torch.Generator().manual_seed(0)
    depths = 0.5 + 4 * torch.rand(4, 1, 2, 3, generator=g)
    valids = torch.rand(4, 1, 2, 3, generator=g) > 0.3
    whole, parts = fit_depth_floors([{"depth": depths, "valid": valids}]), fit_depth_floors(
        [{"depth": depths[:2], "valid": valids[:2]}, {"depth": depths[2:], "valid": valids[2:]}])
    assert parts.constant == pytest.approx(whole.constant) and torch.allclose(parts.position, whole.position)
    # the first batch has no pixel of class 3
    assert torch.equal(fit_seg_floors([{"label": LABELS[:1]}, {"label": LABELS[1:]}], 3).position,
                       fit_seg_floors([{"label": LABELS}], 3).position)


def test_depth_floors_score_only_the_given_depth_range():
    # Validation pixels: 2 m and 4 m scored as before; 0.5 m and 10.5 m count only inside the range asked for.
    train = [{"depth": DEPTHS, "valid": VALIDS}]
    val = [{"depth": torch.tensor([[[[2.0, 4.0]]], [[[0.5, 10.5]]]]),
            "valid": torch.ones(2, 1, 1, 2, dtype=torch.bool)}]
    # default range (1e-3, 10): 0.5 m is scored, 10.5 m is not; position predicts 2 and 8 -> |2 - 0.5| / 0.5 = 3
    assert depth_floors(train, val)["position"]["abs_rel"] == pytest.approx((0.5 + 3.0) / 2)
    # (1, 11): 10.5 m is scored (|8 - 10.5| / 10.5), 0.5 m is not
    narrow = depth_floors(train, val, min_depth=1.0, max_depth=11.0)["position"]["abs_rel"]
    assert narrow == pytest.approx((0.5 + 2.5 / 10.5) / 2)
    # score's own default range is the same: 2 m everywhere scores 0.5 m (|2 - 0.5| / 0.5 = 3), not 10.5 m; the
    # first frame gives (0 + 2 / 4) / 2
    two = score({"two": lambda batch: torch.full_like(batch["depth"], 2.0)}, val, task="depth")["two"]
    assert two["abs_rel"] == pytest.approx((0.25 + 3.0) / 2)
