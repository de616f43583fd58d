"""Typed configs: dataclass defaults <- YAML recipe <- ``key=value`` overrides (DINOv2-style).

Every run writes the resolved config next to its outputs, and checkpoints store it as plain data, so a run can be
rebuilt from its folder alone.

Example::

    cfg = load_config(PretrainConfig, "pretrain_synth_tiny", ["model.rgb_mask_ratio=0.6", "optim.base_lr=3e-4"])
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .io import write_text

T = TypeVar("T")
RECIPES_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key and what to do."""


def to_dict(cfg: Any) -> dict:
    """Dataclass -> plain nested dict (tuples become lists so YAML and JSON stay plain)."""
    def plain(v):
        if hasattr(v, "to_config_dict"):  # a config class with its own layout (a data source: its format's options)
            return plain(v.to_config_dict())
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(cfg)


def from_dict(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, coercing types and rejecting unknown keys by name."""
    data = dict(data or {})
    if hasattr(cls, "from_config_dict"):  # reads its own keys (a data source: the options its format declares)
        return cls.from_config_dict(data, prefix)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {_unknown_keys(unknown, names, prefix)}; "
                          f"valid keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], prefix + f.name)
    cfg = cls(**kwargs)
    if prefix == "":
        check_finite(cfg)
    return cfg


def _unknown_keys(unknown: typing.Iterable[str], valid: typing.Iterable[str], prefix: str) -> str:
    """``"a.lrr (did you mean a.lr?), a.zzz"``: each unknown key under ``prefix`` with its closest valid one."""
    valid = list(valid)
    names = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1)
        names.append(prefix + key + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
    return ", ".join(names)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} must be a mapping, got {value!r}")
        return from_dict(tp, value, key + ".")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key {key} needs {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ConfigError(f"config key {key} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads "1e-4" (no dot) as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} must be a string, got {value!r}")
        return value
    return value


def check_finite(cfg: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the first NaN or infinite number in ``cfg``."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(v):
            check_finite(v, key + ".")
            continue
        for i, x in enumerate(v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, float) and not math.isfinite(x):
                where = key if not isinstance(v, (list, tuple)) else f"{key}[{i}]"
                raise ConfigError(f"config value {where}={x} is not finite; set it to a finite number")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.base_lr=1e-3"`` -> (["optim", "base_lr"], 0.001). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. optim.base_lr=1e-3)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw.strip() else ""


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe is a YAML path, or the name of one shipped in ``mask3d_vit/configs`` (with or without .yaml)."""
    path = Path(recipe)
    if path.is_file():
        return path
    for candidate in (RECIPES_DIR / f"{recipe}.yaml", RECIPES_DIR / str(recipe)):
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"config {recipe!r} is neither a YAML file nor a packaged recipe; packaged recipes: {names}")


# The command a packaged recipe is written for, as its header comment shows it ("mask3d-vit finetune seg --out ...",
# "torchrun ... -m mask3d_vit pretrain ...", "python benchmarks/transfer.py").
_RECIPE_COMMAND = re.compile(r"(?:mask3d-vit|-m mask3d_vit)\s+((?:pretrain|finetune|probe|demo)"
                             r"(?:\s+(?:seg|depth|det)\b)?)|python\s+(benchmarks/\S+\.py)")


def recipe_command(recipe: str | Path) -> str | None:
    """The command ``recipe`` is written for, e.g. ``"mask3d-vit finetune seg"``, from its header comment; None
    when the header names none (a user's own YAML)."""
    for line in resolve_recipe(recipe).read_text().splitlines():
        if not line.startswith("#"):
            break
        match = _RECIPE_COMMAND.search(line)
        if match:
            return "mask3d-vit " + " ".join(match[1].split()) if match[1] else f"python {match[2]}"
    return None


def load_yaml(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys")
    return data


def load_config(cls: type[T], recipe: str | Path | None = None, overrides: typing.Sequence[str] = (),
                base: dict | None = None) -> T:
    """Defaults of ``cls``, then ``base`` (e.g. a checkpoint's stored config), then the recipe, then overrides."""
    data = to_dict(cls())
    if base:
        data = merge(data, base)
    if recipe is not None:
        data = merge(data, load_yaml(resolve_recipe(recipe)))
    if overrides:
        # Every field spelled out, list items included, so an override can reach a key the recipe left at its
        # default (``data.sources.0.root`` where the recipe's source names only ``format``).
        data = to_dict(from_dict(cls, data))
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, k in enumerate(keys):
            where = ".".join(keys[:i])
            if isinstance(node, list):
                k = _list_index(node, k, where, text)
            elif not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {where} is not a config section")
            elif k not in node:
                unknown = _unknown_keys([k], node, "".join(key + "." for key in keys[:i]))
                raise ConfigError(f"override {text!r}: unknown key {unknown}; "
                                  f"valid keys here: {', '.join(sorted(node))}")
            if i == len(keys) - 1:
                node[k] = value
            else:
                node = node[k]
    return from_dict(cls, data)


def _list_index(items: list, key: str, where: str, text: str) -> int:
    """``key`` as an index into the list at config key ``where`` (the ``0`` of ``data.sources.0.root``)."""
    if not key.isdigit():
        raise ConfigError(f"override {text!r}: {where} is a list; name an item by its index, e.g. {where}.0")
    if int(key) >= len(items):
        valid = f"valid: 0..{len(items) - 1}" if items else "it is empty"
        raise ConfigError(f"override {text!r}: {where} has {len(items)} item(s), so index {key} is out of range "
                          f"({valid}); to add items set the whole list, e.g. {where}='[...]'")
    return int(key)


def save_config(cfg: Any, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
