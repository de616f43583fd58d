"""The dataset format registry: a format declared once (one reader class, one registration line) works in data
check, data convert and training; data sources carry their format's own options."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from mask3d_vit.cli import main
from mask3d_vit.config import ConfigError, load_config, to_dict
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset, class_set_of
from mask3d_vit.data.formats.common import Reader, sample_from
from mask3d_vit.data.registry import (BUILTIN, DatasetFormat, detect_format, format_names, get_format,
                                      register_format, unregister_format)
from mask3d_vit.checkpoint import load_latest


class ToyReader(Reader):
    """ROOT/<split>-<n>.npz, each holding rgb (H, W, 3) uint8, depth (H, W) metres and label (H, W) nyu13 ids."""

    class_set = "nyu13"

    def __init__(self, src, *, root, split, require_labels, **_):
        super().__init__(root, require_labels=require_labels)
        self.frames = sorted(p for p in self.root.glob("*.npz") if split is None or p.stem.startswith(f"{split}-"))
        self._require_frames(f"split {split!r}: expected <split>-<n>.npz files")

    def frame_id(self, path):
        return path.stem

    def load(self, path):
        with np.load(path) as f:
            return sample_from(f["rgb"], f["depth"], (30.0, 30.0, 15.5, 11.5), path.stem, paths=[path],
                               label=f["label"])


TOY = DatasetFormat("toy", open=ToyReader, class_set="nyu13", default_splits=("train", "val"), depth_scale=4000.0,
                    detect=lambda path: path.is_dir() and any(path.glob("*.npz")))


@pytest.fixture
def toy(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "toy"
    root.mkdir()
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            np.savez(root / f"{split}-{i}.npz", rgb=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                     depth=rng.uniform(1.0, 4.0, (24, 32)).astype(np.float32),
                     label=rng.integers(0, 14, (24, 32)).astype(np.uint8))
    register_format(TOY)
    try:
        yield root
    finally:
        unregister_format("toy")
    assert "toy" not in format_names()


def test_a_registered_toy_format_works_in_check_convert_and_pretraining(toy, tmp_path, capsys):
    assert detect_format(toy) == "toy"  # its own detect, not a built-in rule
    assert main(["data", "check", str(toy), "--quiet"]) == 0  # format guessed from the files
    out = capsys.readouterr().out
    assert out.startswith(f"toy {toy}: 6 frames read, 0 errors") and "labels (nyu13): 6/6 frames" in out

    converted = tmp_path / "converted"
    assert main(["data", "convert", "toy", str(toy), "--out", str(converted), "--quiet"]) == 0
    meta = json.loads((converted / "meta.json").read_text())
    assert meta["depth_scale"] == 4000.0 and meta["class_set"] == "nyu13"  # from the declaration
    assert (converted / "train.txt").read_text().split() == [f"train-{i}" for i in range(4)]
    assert (converted / "val.txt").read_text().split() == ["val-0", "val-1"]  # the declared default splits

    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), f"data.sources=[{{format: toy, root: {toy}}}]", "data.size=[32,48]",
                 "model.encoder=vit_micro_patch16", "model.img_size=[32,48]", "model.decoder_dim=32",
                 "model.depth_dim=32", "train.max_steps=1", "train.batch_size=2", "train.precision=fp32",
                 "train.figure_every=0", "val_batches=0"]) == 0
    assert load_latest(run)[1]["step"] == 1


def test_registering_a_taken_name_is_an_error():
    with pytest.raises(ValueError, match="'nyuv2' is already registered"):
        register_format(DatasetFormat("nyuv2", open=ToyReader))


def test_every_builtin_module_declares_the_format_it_is_registered_as():
    for name in BUILTIN:
        fmt = get_format(name)
        assert fmt.name == name and callable(fmt.open)
        assert fmt.generator == (name == "synthrooms")


def test_detection_prefers_a_specific_layout_to_a_generic_one(tmp_path):
    (tmp_path / "depth").mkdir()
    assert detect_format(tmp_path) == "pairs"  # a bare depth/ folder
    (tmp_path / "label13").mkdir()
    assert detect_format(tmp_path) == "nyuv2"  # the NYUv2 PNG export has depth/ too
    (tmp_path / "leftImg8bit").mkdir()
    with pytest.raises(ValueError, match=r"fit several dataset formats \(nyuv2, cityscapes\); pass --format"):
        detect_format(tmp_path)


def test_synthrooms_sources_take_generator_settings_from_the_recipe():
    plain = ["data.sources=[{format: synthrooms, num_frames: 2, seed: 0}]", "data.size=[32,48]"]
    bare = ["data.sources=[{format: synthrooms, num_frames: 2, seed: 0, holes: false, sensor_noise: false, "
            "num_furniture: [0, 0]}]", "data.size=[32,48]"]
    from mask3d_vit.tasks.pretrain import PretrainConfig
    a, b = (load_config(PretrainConfig, "pretrain_synth_tiny", o).data for o in (plain, bare))
    assert b.sources[0].holes is False and b.sources[0].num_furniture == (0, 0) and b.sources[0].num_frames == 2
    raw = [build_dataset(DataConfig(sources=d.sources, size=d.size, augment=False, cache=False), train=False)[0]
           for d in (a, b)]
    assert raw[0]["depth"].shape == raw[1]["depth"].shape == (1, 32, 48)
    assert not raw[0]["valid"].all() and raw[1]["valid"].all(), "holes: false leaves no depth hole"
    # The resolved config spells the settings out, so the saved run config reloads to the same source.
    assert load_config(PretrainConfig, None, base=to_dict(load_config(PretrainConfig, "pretrain_synth_tiny", bare))
                       ).data.sources == b.sources


@pytest.mark.parametrize("source, message", [
    ("{format: synthrooms, holse: false}", r"unknown data source key\(s\) data\.sources\[0\]\.holse \(did you mean "
                                           r"data\.sources\[0\]\.holes\?\) for format synthrooms"),
    ("{format: frames, root: x, frame_skip: 5}", "frame_skip=5 does not apply to frames sources: only scannet"),
    ("{format: synthrooms, num_frames: -1}", "num_frames must be >= 0"),
    ("{format: kitti, root: x}", "format 'kitti' is unknown; choose one of synthrooms, frames, nyuv2"),
])
def test_bad_source_keys_are_named(source, message):
    from mask3d_vit.tasks.pretrain import PretrainConfig
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, "pretrain_synth_tiny", [f"data.sources=[{source}]"])


def test_configs_written_with_the_old_flat_source_keys_still_load():
    # Before formats declared their options, every source spelled out every format's keys at these defaults.
    old = {"format": "frames", "root": "data/x", "split": "", "num_frames": 2000, "seed": 0, "depth_scale": 0.0,
           "class_set": "", "raw_depth": False, "frame_skip": 25, "fraction": 1.0}
    src = load_config(DataConfig, None, base={"sources": [old]}).sources[0]
    assert src == SourceConfig(format="frames", root="data/x")
    nyu = load_config(DataConfig, None, base={"sources": [{**old, "format": "nyuv2", "class_set": "nyu13"}]})
    assert nyu.sources[0].class_set == "nyu13" and nyu.sources[0].raw_depth is False
    assert class_set_of(load_config(DataConfig, None, base={"sources": [{**old, "format": "nyuv2"}]})) == "nyu40"


def test_format_options_on_the_data_command_line(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path), "--format", "frames", "--option", "class_set=nyu13"]) == 1
    assert "class_set='nyu13' does not apply to frames sources: only nyuv2 sources" in capsys.readouterr().err
    assert main(["data", "convert", "synthrooms", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "renders its frames instead of reading files" in capsys.readouterr().err


def test_pairs_sources_still_need_a_depth_scale_and_have_no_labels(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    with pytest.raises(ConfigError, match="need depth_scale"):
        build_dataset(DataConfig(sources=[SourceConfig(format="pairs", root=str(tmp_path))]))
    with pytest.raises(ConfigError, match="pairs sources have no labels"):
        build_dataset(DataConfig(sources=[SourceConfig(format="pairs", root=str(tmp_path), depth_scale=1000)]),
                      require_labels=True)


def test_format_lookup_is_case_insensitive_for_builtin_and_registered_formats():
    assert get_format("NYUv2").name == "nyuv2" and get_format("SynthRooms").name == "synthrooms"
    fmt = register_format(DatasetFormat("Toy2", open=ToyReader))
    try:
        assert get_format("toy2") is fmt and get_format("TOY2") is fmt and get_format("Toy2") is fmt
        with pytest.raises(ValueError, match="already registered"):
            register_format(DatasetFormat("TOY2", open=ToyReader))
    finally:
        unregister_format("Toy2")
    unregister_format("toy2")  # forgetting a format twice is harmless (fixtures do it in their `finally`)
    with pytest.raises(ConfigError, match="'toy2' is unknown; choose one of synthrooms, frames"):
        get_format("toy2")
    with pytest.raises(ValueError, match="already registered"):
        register_format(DatasetFormat("NYUv2", open=ToyReader))


def test_detect_format_names_the_path_it_cannot_tell(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}: cannot tell the dataset format from its files; pass --format"):
        detect_format(tmp_path)


def test_a_declaration_answers_for_its_sources(monkeypatch):
    fixed = DatasetFormat("a", open=ToyReader, class_set="nyu13", default_splits=("train", "val"))
    assert fixed.splits_of("anywhere") == ("train", "val") and fixed.source_class_set(None) == "nyu13"
    chosen = DatasetFormat("b", open=ToyReader, class_set=lambda src: src.options,
                           default_splits=lambda root: (root.name, root.parent.name))  # a Path, whatever it is given
    assert chosen.splits_of("data/flat") == ("flat", "data") and isinstance(chosen.splits_of("x"), tuple)
    assert chosen.source_class_set(SimpleNamespace(options="nyu40")) == "nyu40"
    monkeypatch.setitem(BUILTIN, "fake", "mask3d_vit.data.frames")  # a module declaring another format
    with pytest.raises(RuntimeError, match="mask3d_vit.data.frames.DATASET_FORMAT declares format 'frames', "
                                           "registered as 'fake'"):
        get_format("fake")
