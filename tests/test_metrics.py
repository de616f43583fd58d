"""Segmentation and depth metrics against hand-computed values, ignore handling, and reduction across processes."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mask3d_vit.eval.depth import DEPTH_METRICS, DepthMeter, depth_errors, median_scale
from mask3d_vit.eval.segmentation import (SegmentationMeter, confusion_matrix, format_class_table,
                                          segmentation_metrics)

# 3 classes; 0 = unlabeled. Hand count of (true, predicted) over the labelled pixels:
#   true 1: pred 1, 1, 2      true 2: pred 2, 3      true 3: pred 3      (two unlabeled pixels ignored)
TARGET = torch.tensor([[1, 1, 1, 2], [2, 3, 0, 0]])
PRED = torch.tensor([[1, 1, 2, 2], [3, 3, 1, 2]])
CONF = torch.tensor([[2, 1, 0],
                     [0, 1, 1],
                     [0, 0, 1]])


def test_confusion_matrix_by_hand_with_ignored_pixels():
    assert torch.equal(confusion_matrix(PRED, TARGET, 3), CONF)


def test_metrics_by_hand():
    m = segmentation_metrics(CONF)
    # IoU = TP / (GT + Pred - TP): class 1: 2/(3+2-2), class 2: 1/(2+2-1), class 3: 1/(1+2-1)
    iou = [2 / 3 * 100, 1 / 3 * 100, 1 / 2 * 100]
    acc = [2 / 3 * 100, 1 / 2 * 100, 100.0]
    assert m["iou"] == pytest.approx(iou)
    assert m["acc"] == pytest.approx(acc)
    assert m["miou"] == pytest.approx(sum(iou) / 3)
    assert m["macc"] == pytest.approx(sum(acc) / 3)
    assert m["pixel_acc"] == pytest.approx(4 / 6 * 100)


def test_absent_class_is_excluded_but_false_positive_class_counts():
    # Class 2 appears nowhere (IoU undefined, excluded); class 3 is only predicted (IoU 0, included).
    conf = torch.tensor([[3, 0, 1],
                         [0, 0, 0],
                         [0, 0, 0]])
    m = segmentation_metrics(conf)
    assert math.isnan(m["iou"][1]) and m["iou"][2] == 0.0
    assert m["miou"] == pytest.approx((3 / 4 * 100 + 0.0) / 2)
    assert m["macc"] == pytest.approx(75.0)  # only class 1 has ground truth
    table = format_class_table(m, class_names=("unlabeled", "a", "b", "c"))
    assert "| b | - | - |" in table and "| c | 0.0 | - |" in table and "37.5" in table


def test_ignored_pixels_never_count_whatever_is_predicted():
    target = torch.zeros(4, 4, dtype=torch.long)
    target[0, 0] = 2
    for pred_value in (1, 3):
        pred = torch.full((4, 4), pred_value)
        pred[0, 0] = 2
        assert confusion_matrix(pred, target, 3).sum() == 1


def test_out_of_range_ids_raise():
    with pytest.raises(ValueError, match="prediction ids must lie in 1..3"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([1, 1]), 3)
    with pytest.raises(ValueError, match="label ids must lie in 1..3"):
        confusion_matrix(torch.tensor([1, 1]), torch.tensor([4, 1]), 3)
    with pytest.raises(ValueError, match="differs"):
        confusion_matrix(torch.ones(2, 3, dtype=torch.long), torch.ones(3, 2, dtype=torch.long), 3)


def test_meter_accumulates_batches():
    meter = SegmentationMeter(3)
    meter.update(PRED[:1], TARGET[:1])
    meter.update(PRED[1:], TARGET[1:])
    assert torch.equal(meter.conf, CONF)
    assert meter.compute()["pixel_acc"] == pytest.approx(4 / 6 * 100)


def test_depth_metrics_by_hand():
    gt = torch.tensor([[[[1.0, 2.0], [4.0, 8.0]]]])
    valid = torch.ones_like(gt, dtype=torch.bool)
    pred = gt * 1.1
    errors = dict(zip(DEPTH_METRICS, depth_errors(pred, gt, valid)[0].tolist()))
    assert errors["abs_rel"] == pytest.approx(0.1)
    assert errors["rmse"] == pytest.approx(0.1 * math.sqrt((1 + 4 + 16 + 64) / 4))
    assert errors["log10"] == pytest.approx(math.log10(1.1))
    assert errors["delta1"] == pytest.approx(100.0)
    # 1.3x is outside delta1 (1.25) but inside delta2 (1.5625)
    far = dict(zip(DEPTH_METRICS, depth_errors(gt * 1.3, gt, valid)[0].tolist()))
    assert far["delta1"] == 0.0 and far["delta2"] == 100.0


def test_depth_meter_ignores_invalid_pixels_and_empty_images_and_median_scales():
    gt = torch.tensor([[1.0, 2.0], [4.0, 8.0]]).expand(2, 1, 2, 2).clone()
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[0, 0, 0, 0] = False          # this pixel's wild prediction must not count
    valid[1] = False                   # an image without valid depth is not scored at all
    pred = gt * 1.1
    pred[0, 0, 0, 0] = 50.0
    meter = DepthMeter(max_depth=10.0)
    meter.update(pred, gt, valid)
    out = meter.compute()
    assert out["images"] == 1
    assert out["abs_rel"] == pytest.approx(0.1)
    assert out["delta1"] == pytest.approx(100.0)
    assert out["abs_rel_med"] == pytest.approx(0.0, abs=1e-9)  # a global 1.1x scale error vanishes


def test_depth_range_and_clamping():
    gt = torch.tensor([[[[2.0, 20.0]]]])  # 20 m is beyond max_depth: not scored
    pred = torch.tensor([[[[200.0, 1.0]]]])  # the far prediction is clamped to max_depth = 10 m
    meter = DepthMeter(max_depth=10.0)
    meter.update(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert meter.compute()["abs_rel"] == pytest.approx((10.0 - 2.0) / 2.0)
    with pytest.raises(ValueError, match="min_depth"):
        DepthMeter(min_depth=5.0, max_depth=1.0)


def test_median_scale_per_image():
    gt = torch.tensor([[1.0, 3.0], [2.0, 2.0]]).view(2, 1, 1, 2)
    pred = torch.tensor([[2.0, 6.0], [1.0, 1.0]]).view(2, 1, 1, 2)
    scaled = median_scale(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    torch.testing.assert_close(scaled, gt)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reduce_worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        seg = SegmentationMeter(3)
        seg.update(PRED[rank:rank + 1], TARGET[rank:rank + 1])   # each rank sees one row
        seg.all_reduce()
        gt = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]]])
        depth = DepthMeter()
        depth.update(gt[rank:rank + 1] * (1.1 if rank == 0 else 1.3), gt[rank:rank + 1],
                     torch.ones(1, 1, 1, 2, dtype=torch.bool))
        depth.all_reduce()
        if rank == 0:
            queue.put((seg.conf.tolist(), depth.compute()))
    finally:
        dist.destroy_process_group()


def test_reduction_across_two_processes_matches_one():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_reduce_worker, args=(_free_port(), queue), nprocs=2, start_method="spawn")
    conf, depth = queue.get(timeout=60)
    assert conf == CONF.tolist()
    assert depth["images"] == 2
    assert depth["abs_rel"] == pytest.approx((0.1 + 0.3) / 2)
    assert depth["delta1"] == pytest.approx(50.0)


def test_single_labelled_pixel_and_the_id_range_an_error_reports():
    # One labelled pixel of class 1, predicted right: IoU, accuracy and pixel accuracy 100 %; class 2 undefined.
    m = segmentation_metrics(confusion_matrix(torch.tensor([1, 2]), torch.tensor([1, 0]), 2))
    assert m["iou"][0] == m["acc"][0] == m["pixel_acc"] == 100.0 and math.isnan(m["iou"][1])
    with pytest.raises(ValueError, match=r"prediction ids must lie in 1\.\.3 on labelled pixels; found 0\.\.2 \("):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([1, 1]), 3)


def test_depth_meter_averages_images_over_batches_and_keeps_both_range_ends():
    keys = {*DEPTH_METRICS, *(f"{name}_med" for name in DEPTH_METRICS), "images"}
    meter = DepthMeter(min_depth=0.5, max_depth=10.0)
    empty = meter.compute()
    assert empty.keys() == keys and empty["images"] == 0
    assert all(math.isnan(v) for k, v in empty.items() if k != "images")

    def frames(*rows):
        return torch.tensor(rows).view(len(rows), 1, 1, 4)

    # A: 0.5 m (= min_depth) and 10 m (= max_depth) are not scored; the 0.1 m prediction is clamped up to 0.5.
    #    abs_rel (0.5 + 0) / 2; median scale 1 / 0.5 = 2 -> (1, 4) against (1, 2): abs_rel_med (0 + 1) / 2.
    meter.update(frames([7.0, 0.1, 2.0, 3.0]), frames([0.5, 1.0, 2.0, 10.0]), torch.ones(1, 1, 1, 4, dtype=torch.bool))
    # B: scale 2 / 1 -> (2, 2, 18 clamped to 10) against (1, 2, 9): abs_rel_med (1 + 0 + 1/9) / 3.
    # C: scale 2 / 4 -> (0.3 clamped up to 0.5, 2, 3) against (1, 2, 3): abs_rel_med (0.5 + 0 + 0) / 3.
    valid = torch.tensor([True, True, True, False]).expand(2, 1, 1, 4)
    meter.update(frames([1.0, 1.0, 9.0, 5.0], [0.6, 4.0, 6.0, 5.0]), frames([1.0, 2.0, 9.0, 5.0], [1.0, 2.0, 3.0, 5.0]),
                 valid)
    out = meter.compute()
    assert out.keys() == keys and out["images"] == 3
    assert out["abs_rel"] == pytest.approx((0.25 + 0.5 / 3 + 2.4 / 3) / 3)
    assert out["abs_rel_med"] == pytest.approx((0.5 + (1 + 1 / 9) / 3 + 0.5 / 3) / 3)


def test_depth_thresholds_are_strict_powers_of_1_25_and_errors_are_per_image():
    gt = torch.ones(4, 1, 1, 2)
    # Ratios 1.25 (not < 1.25: outside delta1), 1.7 (< 1.25^3 = 1.95 only), 2.0 (outside all three), 1.5 (< 1.5625).
    pred = torch.tensor([1.25, 1.7, 2.0, 1.5]).view(4, 1, 1, 1).expand(4, 1, 1, 2)
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[3, ..., 1] = False  # per-image pixel counts differ
    deltas = depth_errors(pred, gt, mask)[:, 3:].tolist()
    assert deltas == [[0.0, 100.0, 100.0], [0.0, 0.0, 100.0], [0.0, 0.0, 0.0], [0.0, 100.0, 100.0]]
    with pytest.raises(ValueError, match=r"shapes differ: pred \(1, 2\), gt \(1, 3\), mask \(1, 2\)"):
        depth_errors(torch.ones(1, 2), torch.ones(1, 3), torch.ones(1, 2, dtype=torch.bool))
    # An image without a scored pixel keeps its prediction.
    pred = torch.tensor([[[[2.0, 4.0]]], [[[3.0, 5.0]]]])
    gt = torch.tensor([[[[1.0, 2.0]]], [[[1.0, 1.0]]]])
    mask = torch.tensor([[[[True, True]]], [[[False, False]]]])
    torch.testing.assert_close(median_scale(pred, gt, mask), torch.tensor([[[[1.0, 2.0]]], [[[3.0, 5.0]]]]))
