"""Joint transforms: one geometry for every map, hole-aware depth, exact ids, intrinsics that follow the pixels."""
import numpy as np
import pytest
import torch

from mask3d_vit.data.sample import make_sample
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset
from mask3d_vit.data.transforms import (ColorJitter, RandomResizedCrop, apply_deferred_jitter, center_box,
                                        eval_transform, hflip, resize_depth, resized_crop, shrink_to_cover,
                                        train_transform)
from mask3d_vit.engine.data import SeededDataset


def square_sample(h=48, w=64, top=12, left=20, side=16):
    """A frame showing one square object: bright in RGB, nearer in depth, class 3 / instance 7 in the maps."""
    inside = np.zeros((h, w), bool)
    inside[top:top + side, left:left + side] = True
    rgb = np.where(inside[..., None], 250, 10).astype(np.uint8).repeat(3, axis=2)
    depth = np.where(inside, 1.0, 3.0).astype(np.float32)
    return make_sample(rgb, depth, (50.0, 50.0, (w - 1) / 2, (h - 1) / 2), "square",
                       label=inside.astype(np.int64) * 3, instance=inside.astype(np.int64) * 7)


def masks(sample):
    return (sample["rgb"][0] > 127, (sample["depth"][0] > 0) & (sample["depth"][0] < 2.0), sample["label"] == 3,
            sample["instance"] == 7)


def iou(a, b):
    return (a & b).sum().item() / max((a | b).sum().item(), 1)


def test_resize_depth_never_fills_holes_with_fake_depth():
    depth = torch.full((1, 32, 32), 2.0)
    depth[:, :, :16] = 0.0          # left half: a hole
    depth[:, ::2, 16:] = 4.0        # right half: alternating 2 m / 4 m rows
    out = resize_depth(depth, (8, 8))
    assert (out[:, :, :4] == 0).all(), "a region without depth must stay a hole"
    assert ((out[:, :, 4:] >= 2.0) & (out[:, :, 4:] <= 4.0)).all(), "depth must stay within its valid neighbours"
    inner = out[:, 1:-1, 4:]  # away from the top and bottom borders the row pattern averages to exactly 3 m
    assert torch.allclose(inner, torch.full_like(inner, 3.0), atol=1e-4), "holes must not pull depth towards 0"


def test_resize_depth_keeps_depth_under_exactly_half_valid_weight():
    depth = torch.tensor([[[0.0, 2.0], [0.0, 4.0]]])  # each output pixel averages one hole and one reading
    assert resize_depth(depth, (2, 1)).tolist() == [[[2.0], [4.0]]]


def test_resize_depth_keeps_valid_depth_next_to_holes():
    depth = torch.full((1, 16, 16), 1.5)
    depth[:, ::4, ::4] = 0.0  # sparse holes: 1/16 of the pixels
    out = resize_depth(depth, (4, 4))
    assert torch.allclose(out, torch.full_like(out, 1.5)), "sparse holes must neither blend in nor spread"


@pytest.mark.parametrize("seed", range(4))
def test_train_transform_keeps_all_maps_aligned(seed):
    torch.manual_seed(seed)
    out = train_transform((32, 32), scale=(0.6, 1.0), jitter=0.3)(square_sample())
    assert out["rgb"].shape == (3, 32, 32) and out["rgb"].dtype == torch.uint8
    assert out["depth"].shape == out["valid"].shape == (1, 32, 32) and out["label"].shape == (32, 32)
    rgb, depth, label, instance = masks(out)
    assert label.any(), "the crop range always keeps part of the square"
    assert iou(rgb, label) > 0.85 and iou(depth, label) > 0.85 and iou(instance, label) == 1.0
    assert set(out["label"].unique().tolist()) <= {0, 3}, "nearest sampling must not invent class ids"
    assert torch.equal(out["valid"], out["depth"] > 0)


def test_hflip_mirrors_maps_and_principal_point():
    sample = square_sample()
    sample["intrinsics"][2] = 20.0  # off-centre, so a missing update of cx cannot pass as a mirrored one
    out = hflip(sample)
    # The square spans columns 20-35 of 64; mirrored it spans 63-35 = 28 .. 63-20 = 43.
    assert torch.equal(out["label"][12], torch.tensor([0] * 28 + [3] * 16 + [0] * 20))
    for key in ("rgb", "depth", "valid", "label", "instance"):
        assert torch.equal(out[key], sample[key].flip(-1)), key
    assert out["intrinsics"].tolist() == [50.0, 50.0, 43.0, 23.5], "cx mirrors to 63 - 20; fx, fy, cy stay"
    assert sample["intrinsics"][2] == 20.0, "the input sample is left untouched"
    twice = hflip(out)
    for key in ("rgb", "depth", "label", "intrinsics"):
        assert torch.equal(twice[key], sample[key]), key


def test_intrinsics_follow_crop_and_resize():
    # A 2x2 block at rows 10-11, cols 20-21 lands on pixel (5, 10) after halving the frame; its ray must too.
    sample = square_sample(top=10, left=20, side=2)
    k = sample["intrinsics"].tolist()
    ray = ((20.5 - k[2]) / k[0], (10.5 - k[3]) / k[1])
    out = resized_crop(sample, 0, 0, 48, 64, (24, 32))
    assert out["label"][5, 10] == 3
    fx, fy, cx, cy = out["intrinsics"].tolist()
    assert fx * ray[0] + cx == pytest.approx(10.0, abs=1e-4) and fy * ray[1] + cy == pytest.approx(5.0, abs=1e-4)
    crop = resized_crop(sample, 4, 8, 20, 30, (20, 30))  # a pure crop shifts the principal point only
    assert crop["intrinsics"].tolist() == pytest.approx([k[0], k[1], k[2] - 8, k[3] - 4])
    assert torch.equal(crop["label"], sample["label"][4:24, 8:38])


def test_crop_box_outside_the_frame_is_an_error():
    with pytest.raises(ValueError, match="does not fit a 48x64 frame"):
        resized_crop(square_sample(), 40, 0, 16, 16, (8, 8))


def test_eval_transform_is_deterministic_centre_crop():
    sample = square_sample()
    assert center_box(48, 64, (32, 32)) == (0, 8, 48, 48)
    assert center_box(48, 64, (16, 32)) == (8, 0, 32, 64)
    assert center_box(48, 64, (24, 16)) == (0, 16, 48, 32)  # a portrait output from a landscape frame
    assert center_box(48, 64, (1, 100)) == (23, 0, 1, 64) and center_box(48, 64, (100, 1)) == (0, 31, 48, 1)
    transform = eval_transform((24, 24))
    outputs = []
    for seed in (0, 1):  # a random crop or flip would differ between two global RNG states
        torch.manual_seed(seed)
        outputs.append(transform(sample))
    a, b = outputs
    for key in ("rgb", "depth", "label", "instance", "intrinsics"):
        assert torch.equal(a[key], b[key]), key
    # Centre 48x48 box = columns 8-55, halved to 24x24: the square (rows 12-27, cols 20-35, i.e. 12-27 in the box)
    # lands on rows and columns 6-13; nearest sampling reads input pixel 2i+1.
    expected = torch.zeros(24, 24, dtype=torch.int64)
    expected[6:14, 6:14] = 3
    assert torch.equal(a["label"], expected)
    assert a["rgb"].shape == (3, 24, 24) and a["depth"].shape == (1, 24, 24)
    assert a["intrinsics"].tolist() == pytest.approx([25.0, 25.0, (31.5 - 8 + 0.5) / 2 - 0.5, (23.5 + 0.5) / 2 - 0.5])


def test_random_resized_crop_ratio_is_relative_to_output_shape():
    torch.manual_seed(0)
    crop = RandomResizedCrop((16, 64), scale=(0.2, 0.3), ratio=(1.0, 1.0))
    boxes = [crop._sampler.make_params([torch.zeros(3, 200, 400)]) for _ in range(10)]
    assert all(abs(b["width"] / b["height"] - 4.0) < 0.15 for b in boxes)


def test_color_jitter_touches_rgb_only():
    torch.manual_seed(0)
    sample = square_sample()
    out = ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5)(sample)
    assert not torch.equal(out["rgb"], sample["rgb"])
    for key in ("depth", "valid", "label", "instance", "intrinsics"):
        assert torch.equal(out[key], sample[key])


def test_color_jitter_keeps_torchvisions_arithmetic():
    from torchvision.transforms import v2
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for seed in range(20):
        torch.manual_seed(seed)
        expected = v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)(image)
        torch.manual_seed(seed)
        got = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)({"rgb": image})["rgb"]
        # Per-image factors as tensors round a few float products differently before uint8 truncation.
        diff = (got.int() - expected.int()).abs()
        assert diff.max() <= 3 and (diff > 0).float().mean() < 1e-3, seed


def test_jitter_on_the_device_gives_the_loaders_batch():
    """data.augment_on_device: the loader leaves the colour alone and the batch hook jitters it to the same pixels,
    from the same seeded draws (geometry and depth untouched)."""
    batches = []
    for on_device in (False, True):
        cfg = DataConfig(sources=[SourceConfig("synthrooms", num_frames=8, seed=0)], size=(32, 48), jitter=0.4,
                         augment_on_device=on_device)
        dataset = SeededDataset(build_dataset(cfg, split="train", train=True), seed=3)
        batches.append(torch.utils.data.default_collate([dataset[i] for i in range(8)]))
    cpu, deferred = batches
    assert deferred["jitter"].shape == (8, 2, 3)
    assert not torch.equal(deferred["rgb"], cpu["rgb"])
    # Eight images in one batch apply their three ops in different orders (the gathered path of the hook).
    assert len({tuple(r.tolist()) for r in deferred["jitter"][:, 0]}) > 1
    out = apply_deferred_jitter(deferred)
    assert set(out) == set(cpu)
    for key in cpu:
        if key != "frame_id":
            assert torch.equal(out[key], cpu[key]), key
    normalise = lambda rgb: (rgb.float() / 255 - 0.45) / 0.225  # noqa: E731 (what a model does next)
    torch.testing.assert_close(normalise(out["rgb"]), normalise(cpu["rgb"]))


def test_shrink_to_cover_keeps_aspect_and_never_upsamples():
    sample = square_sample()
    small = shrink_to_cover(sample, (24, 24))
    assert small["rgb"].shape[-2:] == (24, 32)
    assert shrink_to_cover(sample, (96, 96)) is sample
