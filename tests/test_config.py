import re
from dataclasses import dataclass, field

import pytest

from mask3d_vit.config import ConfigError, load_config, save_config, load_yaml, to_dict


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
