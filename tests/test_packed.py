"""The packed store (``data pack``, format ``packed``): round trip from every kind of source, the trainer's loader
bitwise equal to a frames folder holding the same bytes (resume mid-epoch, rank shards), damaged and half-written
stores named in one line."""
import json

import numpy as np
import pytest
import torch
from conftest import require_extra
from test_formats_frames import write_frames
from test_formats_scannet import write_sens

from mask3d_vit.cli import main
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset
from mask3d_vit.data.frames import FramesDataset, FramesWriter
from mask3d_vit.data.transforms import RandomResizedCrop, crop_cover_size
from mask3d_vit.engine.data import ResumableSampler, SeededDataset, make_loader

litdata = require_extra("litdata")
zstandard = require_extra("zstandard")

from mask3d_vit.data.packed import PackedDataset, pack  # noqa: E402 (after the extra's check)


def pack_cli(source, out, *args):
    return main(["data", "pack", str(source), "--out", str(out), "--quiet", *args])


def test_round_trip_of_a_frames_folder_keeps_maps_splits_and_intrinsics(tmp_path):
    frames = write_frames(tmp_path / "frames", n=6, h=30, w=40)
    assert pack_cli(frames, tmp_path / "packed", "--size", "30x40") == 0
    assert main(["data", "check", str(tmp_path / "packed"), "--quiet"]) == 0  # format detected, every frame read
    meta = json.loads((tmp_path / "packed" / "packed.json").read_text())
    assert meta["splits"] == {"train": [0, 1, 2, 3], "val": [4, 5]} and meta["class_set"] == "nyu13"
    for split in ("train", "val"):
        a, b = FramesDataset(frames, split), PackedDataset(tmp_path / "packed", split)
        assert len(a) == len(b)
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert x["frame_id"] == y["frame_id"]
            for key in ("depth", "valid", "label", "instance", "intrinsics"):
                assert torch.equal(x[key], y[key]), key
            # Colour is JPEG q95 of RGB noise (the worst case for JPEG): close, not equal.
            assert (x["rgb"].float() - y["rgb"].float()).abs().mean() < 12


def test_pack_shrinks_to_cover_the_stored_size_and_never_enlarges(tmp_path):
    frames = write_frames(tmp_path / "frames", n=3, h=30, w=40)
    pack(SourceConfig("frames", root=str(frames)), tmp_path / "half", size=(15, 16))
    assert PackedDataset(tmp_path / "half")[0]["rgb"].shape == (3, 15, 20)      # aspect kept, covers 15x16
    pack(SourceConfig("frames", root=str(frames)), tmp_path / "big", size=(60, 80))
    assert PackedDataset(tmp_path / "big")[0]["rgb"].shape == (3, 30, 40)       # smaller frames stay


def test_scannet_sens_nyuv2_and_sunrgbd_sources_pack(tmp_path, shared_data):
    assert pack_cli(write_sens(tmp_path / "scene0000_00.sens", n=6), tmp_path / "scannet",
                    "--format", "scannet", "--frame-skip", "2", "--splits", "all") == 0
    assert len(PackedDataset(tmp_path / "scannet")) == 3
    assert pack_cli(shared_data / "nyuv2_train_mini", tmp_path / "nyu", "--splits", "all") == 0
    nyu = PackedDataset(tmp_path / "nyu")
    assert len(nyu) == 10 and nyu[0]["rgb"].shape == (3, 393, 523) and nyu.class_set == "nyu40"
    assert pack_cli(shared_data / "sunrgbd_kv2_mini", tmp_path / "sun") == 0
    assert len(PackedDataset(tmp_path / "sun", "train")) == len(PackedDataset(tmp_path / "sun", "val")) == 15


def as_frames_folder(store, out):
    """A frames folder holding exactly the packed bytes: the JPEG colour files and the uint16 depth of each item."""
    raw = litdata.StreamingDataset(str(store))
    meta = json.loads((store / "packed.json").read_text())
    writer = FramesWriter(out, classes=meta["classes"], class_set=meta["class_set"])
    ids = []
    for i in range(len(raw)):
        item = raw[i]
        shape = int(item["h"]), int(item["w"])
        depth = np.frombuffer(zstandard.ZstdDecompressor().decompress(bytes(item["depth"])), np.uint16).reshape(shape)
        label = np.frombuffer(zstandard.ZstdDecompressor().decompress(bytes(item["label"])), np.uint8).reshape(shape)
        writer.write(item["id"], np.zeros((*shape, 3), np.uint8), depth / 1000.0, intrinsics=item["intrinsics"],
                     label=label)
        (out / "rgb" / f"{item['id']}.png").unlink()
        (out / "rgb" / f"{item['id']}.jpg").write_bytes(bytes(item["rgb"]))
        ids.append(item["id"])
    writer.finish({"train": ids})
    return out


def loader_batches(root, fmt, *, epoch, start, rank, world_size):
    cfg = DataConfig(sources=[SourceConfig(fmt, root=str(root), split="all")], size=(16, 24), cache=False)
    dataset = SeededDataset(build_dataset(cfg, split="train", train=True, require_labels=True), seed=5)
    sampler = ResumableSampler(len(dataset), shuffle=True, seed=5, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch, start)
    dataset.epoch = epoch
    return list(sampler), list(make_loader(dataset, batch_size=2, sampler=sampler, num_workers=0, seed=5))


@pytest.mark.parametrize("epoch, start, rank, world_size", [(0, 0, 0, 1), (1, 1, 0, 1), (2, 0, 1, 2)])
def test_trainer_loader_is_bitwise_the_frames_folder_path_at_the_stored_size(tmp_path, epoch, start, rank,
                                                                             world_size):
    pack(SourceConfig("frames", root=str(write_frames(tmp_path / "frames", n=10, h=30, w=40))), tmp_path / "packed",
         size=(24, 32), splits=("all",))
    same = as_frames_folder(tmp_path / "packed", tmp_path / "same")
    order_a, a = loader_batches(tmp_path / "packed", "packed", epoch=epoch, start=start, rank=rank,
                                world_size=world_size)
    order_b, b = loader_batches(same, "frames", epoch=epoch, start=start, rank=rank, world_size=world_size)
    assert order_a == order_b and len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and x["frame_id"] == y["frame_id"]
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), key
    # The rank's shard: its indices only, disjoint from the other rank's.
    if world_size == 2:
        other, _ = loader_batches(tmp_path / "packed", "packed", epoch=epoch, start=0, rank=0, world_size=2)
        assert not set(order_a) & set(other) and len(order_a) == len(other) == 5


def test_a_damaged_shard_is_named_in_one_line_by_training_and_data_check(tmp_path, capsys):
    pack(SourceConfig("frames", root=str(write_frames(tmp_path / "frames", n=6))), tmp_path / "packed")
    shard = next((tmp_path / "packed").glob("chunk-*.bin"))
    data = bytearray(shard.read_bytes())
    data[-400:] = bytes(400)  # same size, damaged JPEG / zstd bytes of the last frames
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{shard}: corrupt shard, item 5"):
        PackedDataset(tmp_path / "packed")[5]
    shard.write_bytes(bytes(data[:-1000]))  # truncated: named when the store is opened
    with pytest.raises(ValueError, match=f"{shard}: corrupt shard"):
        build_dataset(DataConfig(sources=[SourceConfig("packed", root=str(tmp_path / "packed"))]), split="train")
    assert main(["data", "check", str(tmp_path / "packed"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {shard}: corrupt shard" in out and len([l for l in out.splitlines() if "ERROR" in l]) == 1


def test_a_half_written_pack_is_not_a_store(tmp_path, monkeypatch, capsys):
    frames = write_frames(tmp_path / "frames", n=6)
    original = FramesDataset.__getitem__
    calls = []

    def failing(self, i):
        calls.append(i)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the user stops the pack half-way
        return original(self, i)
    monkeypatch.setattr(FramesDataset, "__getitem__", failing)
    with pytest.raises(KeyboardInterrupt):
        pack(SourceConfig("frames", root=str(frames)), tmp_path / "packed", splits=("all",))
    assert not (tmp_path / "packed").exists() and (tmp_path / "packed.partial").is_dir()
    with pytest.raises(FileNotFoundError, match="packed.json: missing; not a packed store .a pack was interrupted"):
        PackedDataset(tmp_path / "packed")
    monkeypatch.setattr(FramesDataset, "__getitem__", original)
    pack(SourceConfig("frames", root=str(frames)), tmp_path / "packed", splits=("all",))  # packs again
    assert len(PackedDataset(tmp_path / "packed")) == 6 and not (tmp_path / "packed.partial").exists()
    assert pack_cli(frames, tmp_path / "packed") == 1
    assert "already exists and is not empty" in capsys.readouterr().err


def test_no_random_crop_of_a_frame_at_the_cover_size_is_upsampled():
    size = (240, 320)
    cover = crop_cover_size(size)
    crop = RandomResizedCrop(size)
    frame = {"rgb": torch.zeros(3, *cover, dtype=torch.uint8)}
    torch.manual_seed(0)
    boxes = [crop._sampler.make_params([frame["rgb"]]) for _ in range(3000)]
    assert min(b["height"] for b in boxes) >= size[0] and min(b["width"] for b in boxes) >= size[1]
    assert min(b["height"] for b in boxes) < size[0] * 1.05  # and the cover is not larger than it must be


def test_the_training_cache_keeps_frames_that_cover_the_smallest_crop(tmp_path):
    frames = write_frames(tmp_path / "frames", n=2, h=60, w=80)
    cfg = DataConfig(sources=[SourceConfig("frames", root=str(frames), split="all")], size=(12, 16))
    dataset = build_dataset(cfg, split="train", train=True)
    dataset[0]
    h, w = dataset._cache[0]["rgb"].shape[-2:]
    assert crop_cover_size((12, 16)) == (20, 27) and h >= 20 and w >= 27 and (h, w) != (60, 80)
    evaluation = build_dataset(cfg, split="val", train=False)
    evaluation[0]
    assert tuple(evaluation._cache[0]["rgb"].shape[-2:]) == (12, 16)  # the centre crop reads the whole frame


def test_the_trainers_loader_keeps_its_workers_and_their_caches_across_epochs(tmp_path):
    cfg = DataConfig(sources=[SourceConfig("frames", root=str(write_frames(tmp_path / "f", n=4)), split="all")],
                     size=(12, 16))
    dataset = SeededDataset(build_dataset(cfg, split="train", train=True), seed=0)
    sampler = ResumableSampler(len(dataset), shuffle=True, seed=0)
    loader = make_loader(dataset, batch_size=2, sampler=sampler, num_workers=1, seed=0)
    assert loader.persistent_workers
    first = [b["rgb"] for b in loader]
    workers = loader._iterator._workers
    sampler.set_epoch(0)
    again = [b["rgb"] for b in loader]
    assert loader._iterator._workers == workers and all(torch.equal(a, b) for a, b in zip(first, again))
