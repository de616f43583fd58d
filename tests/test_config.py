import dataclasses
import re
import typing
from dataclasses import dataclass, field

import pytest

from mask3d_vit.config import (SCHEMA_VERSION, VERSION_KEY, ConfigError, load_config, load_yaml, save_config,
                               signature_config, to_dict, to_saved)


@dataclass
class Inner:
    lr: float = 1e-3
    sizes: tuple[int, int] = (96, 128)
    name: str = "a"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=lambda: [Inner()])
    flag: bool = False
    steps: int = 10


def test_defaults_recipe_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("inner:\n  lr: 2e-4\nsteps: 20\n")
    cfg = load_config(Outer, recipe, ["inner.sizes=[32, 48]", "flag=true", "items=[{name: b}, {lr: 1}]"])
    assert cfg.inner.lr == pytest.approx(2e-4) and isinstance(cfg.inner.lr, float)
    assert cfg.inner.sizes == (32, 48) and cfg.steps == 20 and cfg.flag is True
    assert [i.name for i in cfg.items] == ["b", "a"] and cfg.items[1].lr == 1.0


def test_roundtrip_through_yaml(tmp_path):
    cfg = load_config(Outer, None, ["inner.name=x"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(Outer, None, base=load_yaml(tmp_path / "config.yaml"))
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize("override, message", [
    ("inner.lrr=1", "unknown key inner.lrr (did you mean inner.lr?)"),
    ("inner.zzz=1", "unknown key inner.zzz; valid keys here: lr, name, sizes"),
    ("inner.lr=nan", "inner.lr=nan is not finite"),
    ("inner.lr=.inf", "inner.lr=inf is not finite"),
    ("steps=1.5", "steps must be an integer"),
    ("flag=maybe", "flag must be true or false"),
    ("inner.sizes=[1, 2, 3]", "inner.sizes needs 2 values"),
    ("noequals", "not of the form key=value"),
    ("steps.x=1", "steps is not a config section"),
])
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(Outer, None, [override])


def test_unknown_recipe_lists_packaged_ones():
    with pytest.raises(ConfigError, match="packaged recipes: .*demo"):
        load_config(Outer, "no_such_recipe")


def test_unknown_recipe_keys_suggest_the_closest_valid_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("inner:\n  nmae: b\n  qqq: 1\nstep: 3\n")
    with pytest.raises(ConfigError, match=re.escape("unknown config key(s) step (did you mean steps?)")):
        load_config(Outer, recipe)
    recipe.write_text("inner:\n  nmae: b\n  qqq: 1\n")
    with pytest.raises(ConfigError, match=re.escape("inner.nmae (did you mean inner.name?), inner.qqq; valid")):
        load_config(Outer, recipe)


def test_list_index_overrides_reach_into_list_items_and_tuples(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("items:\n  - {name: first}\n  - {name: second}\n")
    cfg = load_config(Outer, recipe, ["items.1.lr=0.5", "items.0.sizes.1=64", "inner.sizes.0=8"])
    # Keys the recipe's items leave out (lr, sizes) are reachable; the rest of each item is kept.
    assert [i.name for i in cfg.items] == ["first", "second"]
    assert cfg.items[1].lr == 0.5 and cfg.items[0].lr == pytest.approx(1e-3)
    assert cfg.items[0].sizes == (96, 64) and cfg.inner.sizes == (8, 128)


@pytest.mark.parametrize("override, message", [
    ("items.1.lr=1", "items has 1 item(s), so index 1 is out of range (valid: 0..0)"),
    ("items.first.lr=1", "items is a list; name an item by its index, e.g. items.0"),
    ("items.0.lrr=1", "unknown key items.0.lrr"),
    ("inner.sizes.2=1", "inner.sizes has 2 item(s), so index 2 is out of range"),
])
def test_list_index_errors_name_the_list_and_the_valid_range(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_config(Outer, None, [override])


def test_packaged_recipe_source_item_can_be_shortened():
    from mask3d_vit.tasks.pretrain import PretrainConfig
    cfg = load_config(PretrainConfig, "pretrain_synth_tiny", ["data.sources.0.num_frames=100"])
    assert cfg.data.sources[0].num_frames == 100 and cfg.data.sources[0].format == "synthrooms"


# -- schema versions and migrations -----------------------------------------------------------------------------------
def _added_later(inner: dict) -> dict:
    return {"name": "old", **inner}  # before schema 1 the behaviour was "old"; today's default is "a"


@dataclass
class Versioned:
    MIGRATIONS = {0: _added_later}
    lr: float = 1e-3
    name: str = "a"


@dataclass
class Run:
    model: Versioned = field(default_factory=Versioned)
    steps: int = 10


def test_an_unversioned_saved_config_is_migrated_not_laid_over_todays_defaults(tmp_path):
    old = {"model": {"lr": 0.5}, "steps": 3}  # saved before schema versions: no version, no "name"
    cfg = load_config(Run, None, ["steps=4"], base=old)
    assert cfg.model.name == "old" and cfg.model.lr == 0.5 and cfg.steps == 4
    assert old == {"model": {"lr": 0.5}, "steps": 3}  # the caller's data is left alone
    # Saved today: the version is written, every key is explicit, nothing is migrated again.
    save_config(load_config(Run), tmp_path / "config.yaml")
    saved = load_yaml(tmp_path / "config.yaml")
    assert saved[VERSION_KEY] == SCHEMA_VERSION and list(saved)[0] == VERSION_KEY
    assert load_config(Run, None, base=saved).model.name == "a"
    # A saved config.yaml also works as a recipe.
    assert load_config(Run, tmp_path / "config.yaml").model.name == "a"


def test_a_config_from_a_newer_release_is_refused():
    with pytest.raises(ConfigError, match=f"schema_version={SCHEMA_VERSION + 1}.*newer release"):
        load_config(Run, None, base={VERSION_KEY: SCHEMA_VERSION + 1, "steps": 1})


def test_old_pretrain_runs_keep_the_mask3d_settings_of_their_time():
    from mask3d_vit.tasks.pretrain import PretrainConfig
    old = to_dict(load_config(PretrainConfig, "pretrain_synth_tiny"))
    for key in ("fusion", "mask_scheme", "depth_prior"):  # added after the first runs
        del old["model"][key]
    cfg = load_config(PretrainConfig, None, base=old)
    assert (cfg.model.fusion, cfg.model.mask_scheme, cfg.model.depth_prior) == ("concat", "independent", "none")
    # A run saved with every key keeps its own values.
    saved = to_saved(load_config(PretrainConfig, "pretrain_synth_tiny", ["model.fusion=add"]))
    assert load_config(PretrainConfig, None, base=saved).model.fusion == "add"


# -- a key that follows another ---------------------------------------------------------------------------------------
@dataclass
class Data:
    size: tuple[int, int] = (128, 128)


@dataclass
class Model:
    img_size: tuple[int, int] = field(default=(128, 128), metadata={"follows": "data.size"})


@dataclass
class Task:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)


@dataclass
class Probe:
    data: Data = field(default_factory=Data)
    img_size: tuple[int, int] = field(default=(128, 128), metadata={"follows": "data.size"})


@dataclass
class Both:
    task: Task = field(default_factory=Task)
    probe: Probe = field(default_factory=Probe)


def test_img_size_follows_data_size_unless_set(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task:\n  data:\n    size: [64, 96]\nprobe:\n  data:\n    size: [32, 48]\n")
    cfg = load_config(Both, recipe)
    assert cfg.task.model.img_size == (64, 96) and cfg.probe.img_size == (32, 48)
    cfg = load_config(Both, recipe, ["task.data.size=[16, 32]", "probe.img_size=[80, 80]"])
    assert cfg.task.model.img_size == (16, 32) and cfg.probe.img_size == (80, 80)
    assert load_config(Both, recipe, ["task.model={img_size: [16, 16]}"]).task.model.img_size == (16, 16)
    recipe.write_text("task:\n  data:\n    size: [64, 96]\n  model:\n    img_size: [32, 32]\n")
    assert load_config(Both, recipe).task.model.img_size == (32, 32)
    # A saved run keeps its architecture when only the data size changes on resume.
    saved = to_saved(load_config(Both, recipe))
    assert load_config(Both, None, ["task.data.size=[16, 16]"], base=saved).task.model.img_size == (32, 32)


def test_packaged_models_follow_the_data_size():
    from mask3d_vit.tasks.compare import CompareConfig
    cfg = load_config(CompareConfig, "transfer_cpu", ["pretrain.data.size=[64, 80]", "seg.data.size=[48, 64]",
                                                      "depth_probe.data.size=[32, 48]"])
    assert cfg.pretrain.model.img_size == (64, 80) and cfg.seg.model.img_size == (48, 64)
    assert cfg.depth_probe.img_size == (32, 48)


def test_mask3d_config_is_derived_from_the_constructor():
    import inspect

    from mask3d_vit.models.mask3d import Mask3D, Mask3DConfig
    params = inspect.signature(Mask3D).parameters
    assert [f.name for f in dataclasses.fields(Mask3DConfig)] == list(params)
    hints = typing.get_type_hints(Mask3DConfig)
    assert hints["img_size"] == tuple[int, int] and hints["rgb_mask_ratio"] is float
    assert all(f.default == params[f.name].default for f in dataclasses.fields(Mask3DConfig))
    with pytest.raises(TypeError, match="needs a default"):
        signature_config(lambda *, x: x, "Bad", module=__name__, doc="")
