"""Typed configs: dataclass defaults <- YAML recipe <- ``key=value`` overrides (DINOv2-style).

Every run writes the resolved config next to its outputs, and checkpoints store it as plain data, so a run can be
rebuilt from its folder alone. A saved config carries ``schema_version``; one saved by an older version of the
package (none: version 0) is brought up to date by the migrations its sections declare (:func:`migrate`) before it is
laid over today's defaults, so a key added since keeps the behaviour the run was trained with.

A field may follow another key unless a recipe, an override or a saved config sets it
(``field(metadata={"follows": "data.size"})``, see :func:`load_config`): ``model.img_size`` follows ``data.size``.

Example::

    cfg = load_config(PretrainConfig, "pretrain_synth_tiny", ["model.rgb_mask_ratio=0.6", "optim.base_lr=3e-4"])
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
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
# Version of the saved-config layout; raise it with a migration step whenever a key is added with a default that
# differs from the behaviour before it, renamed or removed.
SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key and what to do."""


def signature_config(fn: typing.Callable, name: str, *, module: str, doc: str,
                     metadata: dict[str, dict] | None = None, namespace: dict | None = None) -> type:
    """A config dataclass whose fields are the keyword-only parameters of ``fn``: same names, types and defaults,
    so a constructor's signature is the one place its settings are written.

    Args:
        fn: a function (e.g. a class's ``__init__``) with annotated keyword-only parameters, each with a default.
        name: the class name.
        module: the module the class is reachable from (its ``__module__``).
        doc: the class docstring.
        metadata: per field, its ``dataclasses.field`` metadata (e.g. ``{"img_size": {"follows": "data.size"}}``).
        namespace: class attributes (e.g. ``MIGRATIONS``, see :func:`migrate`).
    """
    hints = typing.get_type_hints(fn)
    metadata = metadata or {}
    fields = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if param.default is inspect.Parameter.empty:
            raise TypeError(f"{fn.__qualname__}: keyword {param.name} needs a default to become a config field")
        default = param.default
        spec = (dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d), metadata=metadata.get(param.name))
                if isinstance(default, (list, dict)) else dataclasses.field(default=default,
                                                                            metadata=metadata.get(param.name)))
        fields.append((param.name, hints[param.name], spec))
    unknown = set(metadata) - {f[0] for f in fields}
    if unknown:
        raise TypeError(f"{fn.__qualname__} has no keyword(s) {', '.join(sorted(unknown))}")
    cls = dataclasses.make_dataclass(name, fields, namespace={"__doc__": doc, **(namespace or {})})
    cls.__module__ = module
    return cls


def config_kwargs(fn: typing.Callable, cfg: Any) -> dict:
    """The fields of config dataclass ``cfg`` that ``fn`` (a function, or a class: its constructor) takes as
    keyword arguments, by name: how a model is built from its config section (``cls(**config_kwargs(cls, cfg))``)."""
    params = inspect.signature(fn).parameters
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name in params and params[f.name].kind is inspect.Parameter.KEYWORD_ONLY}


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
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    close = difflib.get_close_matches(Path(str(recipe)).stem, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"config {recipe!r} is neither a YAML file nor a packaged recipe{hint}; packaged recipes: "
                      f"{', '.join(names)}")


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


def migrate(cls: type, saved: dict, where: str = "saved config") -> dict:
    """A saved config of ``cls`` (plain data, as in ``config.yaml`` or a checkpoint) at :data:`SCHEMA_VERSION`.

    Its ``schema_version`` (absent: 0, a config saved before versions existed) says which steps to run. A config
    section declares its own steps as ``MIGRATIONS = {from_version: function(section_dict) -> section_dict}`` on its
    dataclass; every section of ``cls`` (nested dataclass fields) runs the steps from the saved version on.

    Args:
        cls: the run config class the data was saved from.
        saved: the saved data; not modified.
        where: the file, for the error message.
    """
    data = dict(saved)
    version = data.pop(VERSION_KEY, 0)
    if not isinstance(version, int) or not 0 <= version <= SCHEMA_VERSION:
        raise ConfigError(f"{where}: {VERSION_KEY}={version!r} is not a version this mask3d-vit reads (0 to "
                          f"{SCHEMA_VERSION}); it was written by a newer release: upgrade mask3d-vit")
    return _migrate_section(cls, data, version)


def _migrate_section(cls: type, data: dict, version: int) -> dict:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(data.get(f.name), dict):
            data[f.name] = _migrate_section(hints[f.name], dict(data[f.name]), version)
    steps = getattr(cls, "MIGRATIONS", {})
    for v in range(version, SCHEMA_VERSION):
        if v in steps:
            data = steps[v](data)
    return data


def to_saved(cfg: Any) -> dict:
    """A config resolved by this version of the package (a dataclass, or its :func:`to_dict`) as saved data: headed
    by its ``schema_version``."""
    return {VERSION_KEY: SCHEMA_VERSION, **(cfg if isinstance(cfg, dict) else to_dict(cfg))}


MISSING = object()


def lookup(section: dict, path: str) -> Any:
    """The value at the dotted ``path`` ("model.encoder") of plain config data, or :data:`MISSING`."""
    node: Any = section
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def _follow(cls: type, data: dict, given: dict, parents: tuple[dict, ...] = ()) -> None:
    """Set each field declared ``metadata={"follows": "a.b"}`` that ``given`` leaves unset to the value at ``a.b``,
    looked up in the field's own section first, then in each enclosing one (``model.img_size`` finds the
    ``data.size`` next to its ``model`` section)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        leader = f.metadata.get("follows")
        if leader and f.name not in given:
            for section in (data, *parents):
                value = lookup(section, leader)
                if value is not MISSING:
                    data[f.name] = value
                    break
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(data.get(f.name), dict):
            inner = given.get(f.name)
            _follow(hints[f.name], data[f.name], inner if isinstance(inner, dict) else {}, (data, *parents))


def load_config(cls: type[T], recipe: str | Path | None = None, overrides: typing.Sequence[str] = (),
                base: dict | None = None) -> T:
    """Defaults of ``cls``, then ``base`` (a saved config: a run's ``config.yaml`` or a checkpoint's), then the
    recipe, then overrides.

    ``base`` and a recipe that carries a ``schema_version`` (a saved ``config.yaml`` given as ``--config``) are
    migrated first (:func:`migrate`). A field that follows another key (``model.img_size`` follows ``data.size``)
    takes that key's resolved value unless ``base``, the recipe or an override sets it.
    """
    data = to_dict(cls())
    given: dict = {}
    if base:
        base = migrate(cls, base)
        data, given = merge(data, base), merge(given, base)
    if recipe is not None:
        path = resolve_recipe(recipe)
        layer = load_yaml(path)
        if VERSION_KEY in layer:
            layer = migrate(cls, layer, str(path))
        data, given = merge(data, layer), merge(given, layer)
    given = copy.deepcopy(given)
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
        _mark_given(given, keys, value)
    _follow(cls, data, given)
    return from_dict(cls, data)


def _mark_given(given: dict, keys: list[str], value: Any) -> None:
    """Record that an override set ``keys`` to ``value`` (a path through config sections; list items end it)."""
    node = given
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            if k in node:
                return  # a list item: no follower lives inside a list
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


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
    """Write ``cfg`` as YAML with its ``schema_version`` (:func:`to_saved`), atomically."""
    write_text(path, yaml.safe_dump(to_saved(cfg), sort_keys=False))
