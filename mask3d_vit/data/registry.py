"""Dataset formats: each reader declares itself once, and the factory, ``data convert``, ``data check`` and the CLI
read that declaration.

A format is a :class:`DatasetFormat`: its name, how to open a source, the options a data source of it may set, its
label space, the splits ``data convert`` writes, the depth scale of a converted folder and how to recognise its
files. The formats that ship with the library declare it as ``DATASET_FORMAT`` in their module, registered by one
line of :data:`BUILTIN`; code outside the package registers its own with :func:`register_format`::

    register_format(DatasetFormat("toy", open=lambda src, root, split, **_: ToyReader(root, split),
                                  class_set="nyu13", default_splits=("train", "val"),
                                  detect=lambda path: (path / "toy.json").is_file()))

after which ``format: toy`` works in a recipe's ``data.sources`` and ``mask3d-vit data check`` / ``convert`` read it.
This module imports neither torch nor the readers: the CLI lists the format names without waiting for them.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError

# The formats that ship with the library, in the order the CLI lists them: name -> the module whose DATASET_FORMAT
# declares it, imported when the format is first used. Adding a format: its module plus one line here.
BUILTIN = {
    "synthrooms": "mask3d_vit.data.synthrooms.dataset",
    "frames": "mask3d_vit.data.frames",
    "nyuv2": "mask3d_vit.data.formats.nyuv2",
    "scannet": "mask3d_vit.data.formats.scannet",
    "sunrgbd": "mask3d_vit.data.formats.sunrgbd",
    "cityscapes": "mask3d_vit.data.formats.cityscapes",
    "pairs": "mask3d_vit.data.formats.pairs",
    "packed": "mask3d_vit.data.packed",
}


@dataclass(frozen=True)
class DatasetFormat:
    """Everything the library needs to know about one dataset format.

    Args:
        name: the ``format`` of a data source and of ``mask3d-vit data check / convert``.
        open: ``open(src, *, root, split, depth_scale, size, require_labels) -> Dataset`` of raw sample dicts at
            native resolution (see :class:`mask3d_vit.data.formats.common.Reader`): ``src`` is the
            :class:`~mask3d_vit.data.build.SourceConfig` (``src.options`` an instance of ``options``), ``root`` its
            root as a :class:`~pathlib.Path`, ``split`` a split name or None for every frame, ``depth_scale`` the
            source's positive scale or None, ``size`` the training (H, W), which only generators use, and
            ``require_labels`` asks for a label map on every frame (raise, naming the file, for one without).
        options: dataclass of the keys a data source of this format may set besides the common ones (format,
            root, split, seed, depth_scale, fraction); None when it has none. Its defaults are the format's.
        class_set: the label space of its ``label`` maps (:mod:`mask3d_vit.data.classes`); None when it has no
            labels; a function of the source when the source chooses it (nyuv2) or its files say (frames).
        default_splits: splits ``data convert`` writes by default (``"all"`` = every frame, without split lists);
            or a function of the source's root when the files decide (flat SUN RGB-D folders).
        depth_scale: stored depth units per metre of a converted frames folder (millimetres unless depth exceeds
            what uint16 millimetres hold).
        scaled_depth: the stored depth has a user-settable scale, so a source's ``depth_scale`` applies.
        detect: ``detect(path) -> bool``: the file or folder is in this format (``data check`` without
            ``--format``); None when it cannot be recognised.
        generic: ``detect`` accepts layouts that other formats contain too (a bare ``depth/`` folder), so it is
            tried only when no other format recognises the path.
        generator: frames are rendered from the source's ``seed`` instead of read from files: no root, no
            depth-units probe, validation renders another seed, and ``data check / convert`` do not apply.
    """
    name: str
    open: Callable[..., Any]
    options: type | None = None
    class_set: str | None | Callable[[Any], str | None] = None
    default_splits: tuple[str, ...] | Callable[[Path], tuple[str, ...]] = ("all",)
    depth_scale: float = 1000.0
    scaled_depth: bool = False
    detect: Callable[[Path], bool] | None = None
    generic: bool = False
    generator: bool = False

    def source_class_set(self, src) -> str | None:
        """The label space of ``src`` (a source of this format); None when it has no labels."""
        return self.class_set(src) if callable(self.class_set) else self.class_set

    def splits_of(self, root: str | Path) -> tuple[str, ...]:
        """The splits ``data convert`` writes by default for the source at ``root``."""
        return tuple(self.default_splits(Path(root)) if callable(self.default_splits) else self.default_splits)

    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options)) if self.options else ()


_registered: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Make ``fmt`` usable by name everywhere (recipes, ``data check``, ``data convert``); returns it.

    Raises:
        ValueError: another format already has the name.
    """
    key = fmt.name.lower()  # names are looked up case-insensitively
    if key in BUILTIN or key in _registered:
        raise ValueError(f"dataset format {fmt.name!r} is already registered; pick another name")
    _registered[key] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Forget a format added by :func:`register_format` (tests)."""
    _registered.pop(name.lower(), None)


def format_names() -> tuple[str, ...]:
    """Every format name, the built-in ones first; imports no reader."""
    return tuple(BUILTIN) + tuple(_registered)


def get_format(name: str) -> DatasetFormat:
    """The declaration of format ``name`` (case-insensitive).

    Raises:
        ConfigError: no format has this name (the message lists them).
    """
    key = str(name).lower()
    if key in _registered:
        return _registered[key]
    if key not in BUILTIN:
        raise ConfigError(f"data source format {name!r} is unknown; choose one of {', '.join(format_names())}")
    fmt = importlib.import_module(BUILTIN[key]).DATASET_FORMAT
    if fmt.name != key:
        raise RuntimeError(f"{BUILTIN[key]}.DATASET_FORMAT declares format {fmt.name!r}, registered as {key!r}")
    return fmt


def all_formats() -> list[DatasetFormat]:
    """Every format's declaration, in :func:`format_names` order (imports the built-in readers)."""
    return [get_format(name) for name in format_names()]


def detect_format(path: str | Path) -> str:
    """The format whose ``detect`` recognises ``path``; formats with ``generic`` detection only when no other does.

    Raises:
        ValueError: no format recognises the files, or several do (pass the format explicitly then).
    """
    path = Path(path)
    formats = [f for f in all_formats() if f.detect is not None]
    for generic in (False, True):
        found = [f.name for f in formats if f.generic == generic and f.detect(path)]
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(f"{path}: the files fit several dataset formats ({', '.join(found)}); pass --format")
    raise ValueError(f"{path}: cannot tell the dataset format from its files; pass --format")
