"""SynthRooms: determinism, conventions, geometry, sensor model, dataset, frames folder and CLI."""
import argparse
import dataclasses

import numpy as np
import pytest
import torch

from mask3d_vit.config import ConfigError, load_config
from mask3d_vit.data.classes import NYU13
from mask3d_vit.data.frames import FramesDataset, read_meta
from mask3d_vit.cli import build_parser, parse_size
from mask3d_vit.data.synthrooms import (SynthRooms, SynthRoomsConfig, _albedo, _layout, frame_intrinsics,
                                        kinect_intrinsics, render_frame, write_synthrooms)
from mask3d_vit.data.transforms import hflip, resized_crop

SMALL = SynthRoomsConfig(size=(48, 64))
EXACT = dataclasses.replace(SMALL, sensor_noise=False, holes=False, max_depth=100.0)
FLOOR, WALL, CEILING = NYU13.index("floor"), NYU13.index("wall"), NYU13.index("ceiling")


def pixel_rays(frame):
    """Camera-frame rays ((u - cx) / fx, (v - cy) / fy, 1) of every pixel, (H, W) each."""
    h, w = frame["depth"].shape
    fx, fy, cx, cy = frame["intrinsics"].astype(np.float64)
    v, u = np.mgrid[:h, :w]
    return (u - cx) / fx, (v - cy) / fy


def test_same_frame_twice_is_identical_and_frames_differ():
    a, b = render_frame(3, seed=1, cfg=SMALL), render_frame(3, seed=1, cfg=SMALL)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["rgb"], render_frame(4, seed=1, cfg=SMALL)["rgb"])
    assert not np.array_equal(a["rgb"], render_frame(3, seed=2, cfg=SMALL)["rgb"])


def test_sensor_switches_leave_the_scene_alone():
    noisy = render_frame(5, cfg=SMALL)
    exact = render_frame(5, cfg=EXACT)
    for key in ("rgb", "clean_depth", "label", "instance"):
        np.testing.assert_array_equal(noisy[key], exact[key], err_msg=key)


@pytest.mark.parametrize("size", [(30, 40), (40, 72)])
def test_shapes_and_dtypes(size):
    f = render_frame(0, cfg=SynthRoomsConfig(size=size))
    expected = {"rgb": (np.uint8, size + (3,)), "depth": (np.float32, size), "clean_depth": (np.float32, size),
                "label": (np.uint8, size), "instance": (np.int32, size), "intrinsics": (np.float32, (4,)),
                "camera_pose": (np.float32, (4, 4))}
    for key, (dtype, shape) in expected.items():
        assert f[key].dtype == dtype and f[key].shape == shape, key
    assert isinstance(f["camera_height"], float)


def test_intrinsics_scale_nyu_and_keep_square_pixels_for_any_aspect():
    np.testing.assert_allclose(kinect_intrinsics((480, 640)), [518.8579, 519.4696, 325.5824, 253.7362], rtol=1e-6)
    fx, fy, cx, cy = kinect_intrinsics((120, 160))
    assert fx == pytest.approx(518.8579 / 4, rel=1e-6) and cx == pytest.approx((325.5824 + 0.5) / 4 - 0.5)
    fx, fy, cx, cy = kinect_intrinsics((64, 64))  # 640x480 scaled to cover 64x64, then centre-cropped
    s = 64 / 480
    assert fx == pytest.approx(518.8579 * s, rel=1e-6) and fy / fx == pytest.approx(519.4696 / 518.8579)
    # The principal point keeps its (scaled) offset from the image centre.
    assert cx - 31.5 == pytest.approx(s * (325.5824 - 319.5), abs=1e-4)
    assert cy - 31.5 == pytest.approx(s * (253.7362 - 239.5), abs=1e-4)


def test_labels_are_nyu13_and_rooms_show_many_classes():
    seen = set()
    for i in range(6):
        label = render_frame(i, cfg=SMALL)["label"]
        assert label.max() < len(NYU13)
        seen |= set(np.unique(label).tolist())
    assert {FLOOR, WALL} <= seen
    assert len(seen - {0, FLOOR, WALL, CEILING}) >= 4, seen


def test_floor_depth_matches_camera_height_and_pitch():
    """Without roll, a floor pixel's ray ((u - cx) / fx, (v - cy) / fy, 1) drops by cos(p) y - sin(p) per metre of
    depth, so its depth is camera_height / (cos(p) y - sin(p))."""
    cfg = dataclasses.replace(EXACT, camera_roll_deg=(0.0, 0.0))
    checked = 0
    for i in range(6):
        f = render_frame(i, cfg=cfg)
        floor = f["label"] == FLOOR
        if floor.sum() < 20:
            continue
        _, y = pixel_rays(f)
        p = np.radians(f["camera_pitch_deg"])
        expected = f["camera_height"] / (np.cos(p) * y - np.sin(p))
        np.testing.assert_allclose(f["clean_depth"][floor], expected[floor], rtol=2e-4)
        checked += 1
    assert checked >= 3


def test_floor_and_ceiling_heights_through_the_camera_pose():
    """Back-projected with each frame's own intrinsics (the field of view varies per frame), the floor lies at
    z = 0 and the ceiling on one plane above the camera."""
    focals = set()
    for i in range(6):
        f = render_frame(i, cfg=EXACT)  # default roll: the pose carries it
        focals.add(float(f["intrinsics"][0]))
        x, y = pixel_rays(f)
        z = f["clean_depth"].astype(np.float64)
        points = np.stack([x * z, y * z, z, np.ones_like(z)], -1) @ f["camera_pose"].astype(np.float64).T
        np.testing.assert_allclose(points[..., 2][f["label"] == FLOOR], 0.0, atol=2e-3)
        ceiling = points[..., 2][f["label"] == CEILING]
        if ceiling.size:
            assert np.ptp(ceiling) < 4e-3 and ceiling.mean() > f["camera_height"]
    assert len(focals) == 6


def floor_plane_distance(depth, intrinsics, floor):
    """Distance from the camera centre to the least-squares plane through the back-projected ``floor`` pixels, and
    the 90th percentile of the residuals (m): resizing blends depth across the floor's edges."""
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    v, u = np.nonzero(floor)
    z = depth[v, u].astype(np.float64)
    points = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], 1)
    centre = points.mean(0)
    normal = np.linalg.svd(points - centre)[2][-1]
    return abs(centre @ normal), np.percentile(np.abs((points - centre) @ normal), 90)


def test_intrinsics_follow_the_sample_through_crop_resize_and_flip():
    """The floor back-projected with the sample's intrinsics is a plane camera_height below the camera, as
    rendered and after a crop, a resize and a mirror (which move cx)."""
    cfg = dataclasses.replace(EXACT, size=(96, 128), camera_pitch_deg=(-40.0, -25.0))
    ds = SynthRooms(4, cfg=cfg)
    for i in range(4):
        frame, sample = render_frame(i, cfg=cfg), ds[i]
        variants = [sample, hflip(resized_crop(sample, 20, 10, 64, 96, (48, 64)))]
        for s in variants:
            depth, floor = s["depth"][0].numpy(), s["label"].numpy() == FLOOR
            if floor.sum() < 30:
                continue
            distance, residual = floor_plane_distance(depth, s["intrinsics"], floor & (depth > 0))
            assert distance == pytest.approx(frame["camera_height"], abs=0.01), (i, distance)
            assert residual < 0.02


def test_frame_intrinsics_are_the_rendered_ones_and_stay_in_range():
    cfg = dataclasses.replace(SMALL, focal_scale=(0.8, 1.2))
    base = kinect_intrinsics(cfg.size)
    scales = []
    for i in range(8):
        k = render_frame(i, seed=2, cfg=cfg)["intrinsics"]
        np.testing.assert_array_equal(k, frame_intrinsics(i, seed=2, cfg=cfg))
        np.testing.assert_array_equal(k[2:], base[2:])  # the principal point stays
        assert k[1] / k[0] == pytest.approx(base[1] / base[0], rel=1e-6)
        scales.append(k[0] / base[0])
    assert 0.8 <= min(scales) and max(scales) <= 1.2 and np.ptp(scales) > 0.1
    fixed = dataclasses.replace(cfg, focal_scale=(1.0, 1.0))
    np.testing.assert_array_equal(frame_intrinsics(5, cfg=fixed), base)


def test_camera_pose_ranges_are_respected_and_used():
    cfg = dataclasses.replace(SMALL, camera_height=(0.6, 0.9), camera_pitch_deg=(-20.0, 10.0),
                              camera_roll_deg=(-15.0, 15.0))
    frames = [render_frame(i, cfg=cfg) for i in range(10)]
    for key, (lo, hi) in (("camera_height", cfg.camera_height), ("camera_pitch_deg", cfg.camera_pitch_deg),
                          ("camera_roll_deg", cfg.camera_roll_deg)):
        values = np.array([f[key] for f in frames])
        assert values.min() >= lo and values.max() <= hi, key
        assert np.ptp(values) > (hi - lo) / 3, key  # spread over the range, not pinned to one end
    for f in frames:
        assert f["camera_pose"][2, 3] == pytest.approx(f["camera_height"])


def test_room_shapes_keep_the_camera_in_free_space():
    """With a corner block and a partition in every room, the camera never stands inside either (nor in a
    pillar): the wall-labelled boxes standing in the room."""
    cfg = dataclasses.replace(SMALL, l_shape_prob=1.0, partition_prob=1.0)
    counts = []
    for i in range(10):
        scene, camera, _ = _layout(np.random.default_rng([0, i, 0]), cfg)
        blocks = [p for p, labels in zip(scene.prims[1:], scene.face_labels[1:]) if set(labels) == {WALL}]
        counts.append(len(blocks))
        x, y, _ = camera.origin
        for cx, cy, _, hx, hy, _, c, s, _, _ in blocks:  # AABB of the (possibly turned) box
            ex, ey = abs(c) * hx + abs(s) * hy, abs(s) * hx + abs(c) * hy
            assert abs(x - cx) >= ex or abs(y - cy) >= ey, (i, camera.origin)
    assert min(counts) >= 1 and max(counts) >= 2, counts  # the block always fits; the partition mostly


def test_grain_is_in_world_units_and_fades_with_distance():
    """One solid material with grain: it varies across the surface up close and fades to the plain colour once its
    period spans fewer than about two pixels."""
    material = np.zeros((1, 14), np.float32)
    material[0, 1:4] = material[0, 4:7] = 0.5  # solid pattern (0), one colour
    material[0, 12] = 0.3  # grain strength
    u, v = np.meshgrid(np.linspace(0, 1, 64, dtype=np.float32), np.linspace(0, 1, 64, dtype=np.float32))
    u, v, index = u.ravel(), v.ravel(), np.zeros(u.size, np.int32)
    near = _albedo(material, index, u, v, np.full(u.size, 0.002, np.float32), 0.5)
    far = _albedo(material, index, u, v, np.full(u.size, 0.05, np.float32), 0.5)
    assert near[:, 0].std() > 0.01
    np.testing.assert_allclose(far, 0.5, atol=1e-6)
    # A coarser grain (larger tiles) stays visible at that footprint.
    assert _albedo(material, index, u, v, np.full(u.size, 0.05, np.float32), 5.0)[:, 0].std() > 0.01


def test_camera_light_makes_brightness_fall_with_distance_and_leaves_the_scene_alone():
    def brightness_depth_correlation(cfg):
        out = []
        for i in range(6):
            frame = render_frame(i, seed=0, cfg=cfg)
            valid = frame["clean_depth"] > 0
            lum = np.log1p(frame["rgb"].astype(np.float64).mean(-1)[valid])
            out.append(np.corrcoef(lum, np.log(frame["clean_depth"][valid]))[0, 1])
        return float(np.mean(out))

    lit = dataclasses.replace(SMALL, camera_light=40.0)
    assert brightness_depth_correlation(lit) < min(-0.25, brightness_depth_correlation(SMALL) - 0.15)
    plain, headlamp = render_frame(2, seed=0, cfg=SMALL), render_frame(2, seed=0, cfg=lit)
    for key in ("depth", "label", "instance"):
        np.testing.assert_array_equal(plain[key], headlamp[key])


def test_each_instance_is_one_object_of_one_class_and_stuff_has_none():
    for i in range(4):
        f = render_frame(i, cfg=SMALL)
        label, instance = f["label"], f["instance"]
        for k in np.unique(instance[instance > 0]):
            assert np.unique(label[instance == k]).size == 1, (i, k)
        np.testing.assert_array_equal(instance == 0, np.isin(label, [0, FLOOR, WALL, CEILING]))


def test_holes_only_when_switched_on():
    cfg = dataclasses.replace(SMALL, hole_patches=(2, 2), pixel_dropout=0.05)
    on = render_frame(2, cfg=cfg)
    in_range = (on["clean_depth"] > 0) & (on["clean_depth"] < cfg.max_depth)
    assert (on["depth"][in_range] == 0).mean() > 0.05
    off = render_frame(2, cfg=dataclasses.replace(cfg, holes=False))
    assert np.all(off["depth"][in_range] > 0)
    noisy = np.abs(off["depth"] - off["clean_depth"])[in_range]
    assert 0 < noisy.mean() < 0.05  # Kinect-like noise: millimetres to centimetres


def test_exact_depth_equals_clean_depth_within_range():
    cfg = dataclasses.replace(EXACT, max_depth=3.0)
    f = render_frame(1, cfg=cfg)
    clean = f["clean_depth"]
    assert (clean >= 3.0).any(), "frame should reach beyond 3 m for this test"
    np.testing.assert_array_equal(f["depth"], np.where(clean < 3.0, clean, 0))
    noisy = render_frame(1, cfg=dataclasses.replace(SMALL, max_depth=3.0))["depth"]
    assert noisy.max() < 3.0


def test_dataset_returns_sample_dicts():
    seen = []
    ds = SynthRooms(3, seed=7, cfg=SMALL, transform=lambda s: seen.append(s["frame_id"]) or s)
    assert len(ds) == 3 and ds.class_set == "synthrooms" and ds.classes == NYU13
    s = ds[1]
    assert s["frame_id"] == "synthrooms-s7-000001" and seen == ["synthrooms-s7-000001"]
    assert s["rgb"].dtype == torch.uint8 and s["rgb"].shape == (3, 48, 64)
    assert s["depth"].dtype == torch.float32 and s["depth"].shape == (1, 48, 64)
    assert s["label"].dtype == torch.int64 and s["instance"].dtype == torch.int64
    assert torch.equal(s["valid"], s["depth"] > 0)
    f = render_frame(1, seed=7, cfg=SMALL)
    np.testing.assert_array_equal(s["label"].numpy(), f["label"])
    np.testing.assert_array_equal(s["depth"][0].numpy(), f["depth"])
    assert ds[-1]["frame_id"] == "synthrooms-s7-000002"
    with pytest.raises(IndexError):
        ds[3]


def test_write_synthrooms_reads_back_and_resumes(tmp_path):
    cfg = dataclasses.replace(SMALL, size=(32, 40))
    root = write_synthrooms(tmp_path / "synth", 4, seed=3, cfg=cfg, val_fraction=0.34, progress=False)
    meta = read_meta(root)
    assert meta["class_set"] == "synthrooms" and meta["classes"] == list(NYU13) and meta["depth_scale"] == 1000
    train, val = FramesDataset(root, "train", max_depth=cfg.max_depth), FramesDataset(root, "val")
    assert len(train) + len(val) == 4 and len(val) == 2  # frames 0 and 3: about every 1 / 0.34-th frame
    rendered = SynthRooms(4, seed=3, cfg=cfg)
    for sample in train:
        expected = rendered[int(sample["frame_id"][-6:])]
        assert torch.allclose(sample["depth"], expected["depth"], atol=1e-3)
        assert torch.equal(sample["valid"], expected["valid"])
        assert torch.equal(sample["label"], expected["label"])
        assert torch.equal(sample["instance"], expected["instance"])
        np.testing.assert_allclose(sample["intrinsics"], expected["intrinsics"])
    assert len(read_meta(root)["frame_intrinsics"]) == 4  # the field of view varies per frame

    first = root / "rgb" / "synthrooms-s3-000000.png"
    stamp = first.stat().st_mtime_ns
    (root / "meta.json").unlink()  # as if interrupted before meta.json: kept frames' intrinsics are recomputed
    write_synthrooms(root, 6, seed=3, cfg=cfg, val_fraction=0.34, progress=False)
    assert first.stat().st_mtime_ns == stamp  # kept, not re-rendered
    np.testing.assert_allclose(FramesDataset(root, "val")[0]["intrinsics"], rendered[0]["intrinsics"])
    assert len(FramesDataset(root, "train")) + len(FramesDataset(root, "val")) == 6
    with pytest.raises(ValueError, match="another source"):
        write_synthrooms(root, 6, seed=4, cfg=cfg, progress=False)


def test_workers_write_the_same_folder(tmp_path):
    cfg = dataclasses.replace(SMALL, size=(32, 40))
    one = write_synthrooms(tmp_path / "one", 5, seed=2, cfg=cfg, progress=False)
    two = write_synthrooms(tmp_path / "two", 5, seed=2, cfg=cfg, progress=False, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file()) and len(files) > 20
    for f in files:  # every PNG, the split lists and meta.json (intrinsics of every frame) byte for byte
        assert (one / f).read_bytes() == (two / f).read_bytes(), f


def test_cli_writes_a_folder_and_rejects_a_bad_size(tmp_path, capsys):
    parser = build_parser()
    args = parser.parse_args(["synth", "--out", str(tmp_path / "d"), "--num", "2", "--size", "24x32", "--no-noise",
                              "--no-holes", "--val-fraction", "0.5", "num_clutter=[0,1]"])
    args.func(args)
    ds = FramesDataset(tmp_path / "d", None)
    assert len(ds) == 2 and ds[0]["rgb"].shape == (3, 24, 32)
    assert '"num_clutter": [0, 1]' in read_meta(tmp_path / "d")["source"]
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--out", str(tmp_path / "e"), "--size", "12x"])
    assert "--size" in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError, match="HxW"):
        parse_size("12x")
    assert parse_size("120x160") == (120, 160)


def test_config_is_typed_validated_and_overridable():
    cfg = load_config(SynthRoomsConfig, overrides=["size=[60,80]", "holes=false", "num_furniture=[1,2]"])
    assert cfg.size == (60, 80) and cfg.holes is False and cfg.num_furniture == (1, 2)
    with pytest.raises(ConfigError, match="room_size"):
        SynthRoomsConfig(room_size=(6.0, 3.0))
    with pytest.raises(ConfigError, match="camera_height"):
        SynthRoomsConfig(camera_height=(1.0, 3.0))
    with pytest.raises(ConfigError, match="focal_scale"):
        SynthRoomsConfig(focal_scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="l_shape_prob"):
        SynthRoomsConfig(l_shape_prob=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        render_frame(-1)
