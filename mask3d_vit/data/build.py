"""Dataset factory: data sources in a run config -> datasets of samples at the training resolution.

Every task builds its data here::

    cfg = DataConfig(sources=[SourceConfig(format="nyuv2", root="nyu_depth_v2_labeled.mat", class_set="nyu13")],
                     size=(240, 320))
    train_set = build_dataset(cfg, split="train", train=True, require_labels=True)
    num_classes = get_class_set(class_set_of(cfg)).num_classes

Each source is opened by its format reader (:mod:`mask3d_vit.data.formats`, :class:`FramesDataset`, SynthRooms),
which decodes frames at their native resolution. :class:`SourceDataset` then limits the depth range, keeps the keys
the task asked for, optionally caches decoded frames in memory, applies the joint transforms (random resized crop,
flip and colour jitter for training; a centre crop for evaluation) and, with ``skip_bad``, logs and skips frames that
fail to load. Several sources are concatenated. Before training starts, a few frames of every source are probed so a
wrong depth scale fails the run instead of silently training on it.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..config import ConfigError, _unknown_keys, from_dict, to_dict
from .classes import get_class_set
from .formats.common import units_problem, valid_median
from .frames import INDOOR_DEPTH_RANGE
from .registry import DatasetFormat, all_formats, get_format
from .sample import DEPTH, INSTANCE, LABEL, VALID
from .transforms import crop_cover_size, eval_transform, shrink_to_cover, train_transform

logger = logging.getLogger("mask3d_vit.data")

_PROBES = 3
_VAL_SEED_OFFSET = 1_000_003  # generated validation frames come from a disjoint seed
# Keys that configs written before formats declared their own options spell out for every source, at these values;
# a source accepts them at that value whatever its format (old run directories still load), and its format's own
# default then applies.
_LEGACY_DEFAULTS = {"num_frames": 2000, "class_set": "", "raw_depth": False, "frame_skip": 25}


@dataclass
class SourceKeys:
    """The keys every data source has, whatever its format."""
    format: str = "synthrooms"  # a registered format (mask3d_vit.data.registry.format_names())
    root: str = ""              # folder or file on disk ("" for generators: synthrooms)
    split: str = ""             # "" = the split the task asks for; "all" = every frame; else this split
    seed: int = 0               # generated scenes (synthrooms); also picks the frames kept by `fraction`
    depth_scale: float = 0.0    # stored depth units per metre; 0 = the format's default / meta.json
    fraction: float = 1.0       # keep this fraction of the frames (data-efficiency runs: 0.2, 0.4, ...)


@dataclass(init=False)
class SourceConfig(SourceKeys):
    """One data source: the keys of :class:`SourceKeys` plus the options its format declares.

    Written flat in YAML, e.g. ``{format: nyuv2, root: nyu.mat, class_set: nyu13}`` or ``{format: synthrooms,
    num_frames: 640, seed: 0, holes: false}``: every key that is not a common one is an option of the format
    (:attr:`mask3d_vit.data.registry.DatasetFormat.options`), checked against it, and readable as an attribute
    (``src.class_set``, ``src.num_frames``).

    Args:
        format: a registered format name.
        options: the format's options (an instance of its options dataclass), e.g. passed on by
            ``dataclasses.replace``; keyword arguments naming its fields override them.
        **keys: the common keys (root, split, seed, depth_scale, fraction) and the format's options.

    Raises:
        ConfigError: an unknown format, or a key that is not an option of this format (the message names it).
    """
    options: Any = None  # instance of the format's options dataclass; None when the format has no options

    def __init__(self, format: str = "synthrooms", *, options: Any = None, **keys):
        common = [f for f in dataclasses.fields(SourceKeys) if f.name != "format"]
        super().__init__(format, **{f.name: keys.pop(f.name) for f in common if f.name in keys})
        self.options = format_options(get_format(format), keys, base=options)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: the format's options read like the flat fields they once were.
        options = self.__dict__.get("options")
        if options is not None and name in {f.name for f in dataclasses.fields(options)}:
            return getattr(options, name)
        raise AttributeError(f"a {self.__dict__.get('format')} data source has no key {name!r}")

    @classmethod
    def from_config_dict(cls, data: dict, prefix: str = "") -> SourceConfig:
        """A source from its YAML mapping; errors name the key as ``prefix`` + key (see :func:`config.from_dict`)."""
        common = {f.name for f in dataclasses.fields(SourceKeys)}
        keys = from_dict(SourceKeys, {k: v for k, v in data.items() if k in common}, prefix)
        options = format_options(get_format(keys.format), {k: v for k, v in data.items() if k not in common}, prefix)
        return cls(**{f.name: getattr(keys, f.name) for f in dataclasses.fields(SourceKeys)}, options=options)

    def to_config_dict(self) -> dict:
        """The flat YAML mapping: the common keys, then every option of the format (defaults included, so an
        override such as ``data.sources.0.num_frames=100`` reaches a key the recipe left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(SourceKeys)}
        return {**out, **(to_dict(self.options) if self.options is not None else {})}


def format_options(fmt: DatasetFormat, keys: dict, prefix: str = "", *, base: Any = None) -> Any:
    """The options dataclass of ``fmt`` from a source's non-common ``keys`` (over ``base``, an options instance).

    Raises:
        ConfigError: a key that is not an option of ``fmt``, naming it and the formats that have it, or the closest
            valid key.
    """
    keys = {k: v for k, v in keys.items() if not (k in _LEGACY_DEFAULTS and v == _LEGACY_DEFAULTS[k])}
    names = fmt.option_names()
    unknown = sorted(set(keys) - set(names))
    if unknown:
        key = unknown[0]
        owners = [f.name for f in all_formats() if key in f.option_names()]
        if owners:
            raise ConfigError(f"{prefix}{key}={keys[key]!r} does not apply to {fmt.name} sources: only "
                              f"{', '.join(owners)} sources choose a {key.replace('_', ' ')}")
        valid = [f.name for f in dataclasses.fields(SourceKeys)] + list(names)
        raise ConfigError(f"unknown data source key(s) {_unknown_keys(unknown, valid, prefix)} for format "
                          f"{fmt.name}; valid keys here: {', '.join(valid)}")
    if fmt.options is None:
        return None
    return from_dict(fmt.options, {**(to_dict(base) if base is not None else {}), **keys}, prefix)


@dataclass
class DataConfig:
    """Data of a run: the sources, the training resolution and the augmentation."""
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    val_sources: list[SourceConfig] = field(default_factory=list)  # empty: `sources` at split "val"
    size: tuple[int, int] = (128, 128)      # (H, W) of every sample
    max_depth: float = 10.0                 # metres; farther depth is invalid
    augment: bool = True                    # training: random resized crop + flip + jitter; else centre crop
    crop_scale: tuple[float, float] = (0.5, 1.0)  # random resized crop: area fraction range
    jitter: float = 0.2                     # colour jitter strength (brightness, contrast, saturation); 0 = off
    augment_on_device: bool = False         # jitter each batch on the training device, not in the loader's CPUs
    skip_bad: bool = False                  # log and skip unreadable frames instead of stopping
    cache: bool = True                      # keep decoded frames in memory, downscaled to cover `size`
    cache_gb: float = 4.0                   # cache budget per source and DataLoader worker; later frames re-decode
    check_units: bool = True                # probe each source's median depth; stop on an implausible scale


class SourceDataset(Dataset):
    """A source's raw frames as samples at the training resolution.

    Args:
        reader: map-style dataset of raw sample dicts at native resolution (a format reader, a frames folder or
            SynthRooms).
        transform: joint transform producing samples at the training size (see :mod:`mask3d_vit.data.transforms`).
        max_depth: depth at or beyond this range (metres) becomes invalid.
        keep: which of the optional keys ``label`` / ``instance`` to keep; a frame without a kept key is an error.
        num_classes: labels must lie in 0..num_classes (a frame with other ids is an error); None = unchecked.
        cache_size: (H, W) the cache must cover: decoded frames are stored once, downscaled to cover it (uint8 RGB,
            fp16 depth); None disables the cache.
        cache_bytes: the cache stops growing at this size (frames beyond it are decoded on every access).
        skip_bad: a frame that fails to load is logged and replaced by the next good one instead of raising.
        name: how messages refer to the source.
    """

    def __init__(self, reader: Dataset, *, transform=None, max_depth: float | None = None,
                 keep: tuple[str, ...] = (), num_classes: int | None = None,
                 cache_size: tuple[int, int] | None = None, cache_bytes: float = float("inf"), skip_bad: bool = False,
                 name: str = "source"):
        self.reader = reader
        self.transform = transform
        self.max_depth = max_depth
        self.keep = tuple(keep)
        self.num_classes = num_classes
        self.cache_size = cache_size
        self.skip_bad = skip_bad
        self.name = name
        self.bad: set[int] = set()
        self.cache_bytes = cache_bytes
        self._cache: dict[int, dict] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict:
        sample = self._prepared(index)
        return self.transform(sample) if self.transform is not None else sample

    def _prepared(self, index: int) -> dict:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            if i in self.bad:
                continue
            if i in self._cache:
                return _unpack(self._cache[i])
            try:
                sample = self._prepare(self.reader[i])
            except Exception as e:  # any decoding failure: the reader's message names the file
                if not self.skip_bad:
                    raise
                self.bad.add(i)
                logger.warning("%s: skipping frame %d: %s", self.name, i, e)
                continue
            if self.cache_size is not None and self._cached_bytes < self.cache_bytes:
                packed = _pack(sample)
                self._cache[i] = packed
                self._cached_bytes += sum(v.nbytes for v in packed.values() if isinstance(v, torch.Tensor))
                return _unpack(packed)
            return sample
        raise RuntimeError(f"{self.name}: every frame failed to load (see the warnings above)")

    def _prepare(self, sample: dict) -> dict:
        for key in (LABEL, INSTANCE):
            if key in self.keep and key not in sample:
                raise ValueError(f"{self.name}: frame {sample.get('frame_id')!r} has no {key} map "
                                 f"({key} maps are required here)")
        sample = {k: v for k, v in sample.items() if k not in (LABEL, INSTANCE) or k in self.keep}
        if LABEL in sample and self.num_classes is not None:
            top = int(sample[LABEL].max())
            if top > self.num_classes or int(sample[LABEL].min()) < 0:
                raise ValueError(f"{self.name}: frame {sample.get('frame_id')!r} has label id {top} outside its class "
                                 f"set (0..{self.num_classes})")
        if self.max_depth is not None:  # readers give finite, positive depth where VALID (make_sample): one pass
            sample[VALID] = sample[VALID] & (sample[DEPTH] < self.max_depth)
            sample[DEPTH] = torch.where(sample[VALID], sample[DEPTH], torch.zeros(()))
        return shrink_to_cover(sample, self.cache_size) if self.cache_size is not None else sample


def _pack(sample: dict) -> dict:
    # Compact dtypes: a 128x171 frame takes ~110 kB (uint8 RGB + fp16 depth, +22 kB per id map).
    out = {k: v for k, v in sample.items() if k != VALID}
    out[DEPTH] = sample[DEPTH].half()
    for key, dtype in ((LABEL, torch.uint8), (INSTANCE, torch.int32)):
        if key in sample:
            out[key] = sample[key].to(dtype)
    return out


def _unpack(packed: dict) -> dict:
    out = dict(packed)
    out[DEPTH] = packed[DEPTH].float()
    out[VALID] = out[DEPTH] > 0
    for key in (LABEL, INSTANCE):
        if key in packed:
            out[key] = packed[key].long()
    return out


def open_source(src: SourceConfig, *, split: str | None, size: tuple[int, int] = (128, 128),
                require_labels: bool = False) -> Dataset:
    """The raw reader of one source: samples at native resolution, invalid depth 0, no depth range applied.

    Args:
        src: the source.
        split: split to read (``"train"``, ``"val"``, ``"test"``...), None for every frame; ``src.split`` wins.
        size: rendering size of generated sources (other formats keep their native resolution).
        require_labels: raise, naming the file, for a frame without a label map.
    """
    fmt = get_format(src.format)
    if src.split:
        split = None if src.split == "all" else src.split
    if not fmt.generator and not src.root:
        raise ConfigError(f"data source of format {fmt.name!r} needs a root (folder or file)")
    if src.depth_scale < 0 or (src.depth_scale and not fmt.scaled_depth):
        scaled = ", ".join(f.name for f in all_formats() if f.scaled_depth)
        raise ConfigError(f"depth_scale={src.depth_scale} is not usable for format {fmt.name!r}: it must be > 0 and "
                          f"only applies to {scaled}")
    return fmt.open(src, root=Path(src.root).expanduser(), split=split, depth_scale=src.depth_scale or None,
                    size=tuple(size), require_labels=require_labels)


def source_class_set(src: SourceConfig) -> str | None:
    """Label space of one source's ``label`` maps; None when it has no labels."""
    return get_format(src.format).source_class_set(src)


def class_set_of(cfg: DataConfig) -> str:
    """The one label space of every source (training and validation) of ``cfg``; tasks size their heads with it.

    Class sets declared the same classes (:attr:`ClassSet.same_as`: SynthRooms labels are NYU13 ids) go together,
    under the name the first training source gives them.
    """
    found = {}
    for src in list(cfg.sources) + list(cfg.val_sources):
        found.setdefault(source_class_set(src), []).append(src.root or src.format)
    if None in found:
        raise ConfigError(f"data sources {', '.join(found[None])} have no labels (no class set)")
    if len({get_class_set(name).classes for name in found}) != 1:
        listing = "; ".join(f"{name}: {', '.join(roots)}" for name, roots in found.items())
        raise ConfigError(f"data sources use different class sets ({listing}); convert them to one class set")
    return next(iter(found))


def val_sources(cfg: DataConfig) -> list[SourceConfig]:
    """The sources of every split but ``train``: ``cfg.val_sources``, or when that is empty ``cfg.sources``, where a
    generated source renders scenes of a disjoint seed."""
    return list(cfg.val_sources) or [
        dataclasses.replace(s, seed=s.seed + _VAL_SEED_OFFSET) if get_format(s.format).generator else s
        for s in cfg.sources]


def build_dataset(cfg: DataConfig, *, split: str = "train", train: bool = True, require_labels: bool = False,
                  require_instances: bool = False) -> Dataset:
    """Datasets of samples at ``cfg.size`` (see :mod:`mask3d_vit.data.sample`), one per source, concatenated.

    Args:
        cfg: the data config.
        split: ``"train"`` reads ``cfg.sources``; any other split reads ``cfg.val_sources``, or when that is empty
            ``cfg.sources`` at this split (generated sources then render scenes of a disjoint seed).
        train: augment (when ``cfg.augment``) instead of the deterministic evaluation crop.
        require_labels: samples carry ``label`` and every frame must have one (fine-tuning); without it the
            ``label`` key is dropped so sources with and without labels batch together (pre-training).
        require_instances: samples carry ``instance`` maps and every frame must have one (instance tasks).
    """
    sources = list(cfg.sources) if split == "train" else val_sources(cfg)
    if not sources:
        raise ConfigError("data.sources is empty: name at least one data source")
    size = tuple(int(s) for s in cfg.size)
    transform = (train_transform(size, scale=cfg.crop_scale, jitter=cfg.jitter, jitter_on_device=cfg.augment_on_device)
                 if train and cfg.augment else eval_transform(size))
    keep = (LABEL,) * require_labels + (INSTANCE,) * require_instances
    # Cached frames must cover the smallest random crop at full detail, or the cache serves upsampled crops.
    cache_size = crop_cover_size(size, scale=cfg.crop_scale) if train and cfg.augment else size
    datasets = []
    for src in sources:
        name = f"{src.format} source {src.root}" if src.root else f"{src.format} source"
        needs_maps = require_labels or require_instances
        reader = open_source(src, split=split, size=size, require_labels=needs_maps)
        if cfg.check_units and not get_format(src.format).generator:
            # Depth units are a property of the depth files: probed on frames read without asking for labels, so a
            # frame without a label map is reported by training, naming the file, not as a failed probe.
            check_depth_units(open_source(src, split=split, size=size) if needs_maps else reader, name)
        reader = _fraction(reader, src)
        class_set = source_class_set(src) if require_labels else None
        num_classes = get_class_set(class_set).num_classes if class_set else None
        datasets.append(SourceDataset(reader, transform=transform, max_depth=cfg.max_depth, keep=keep,
                                      num_classes=num_classes,
                                      cache_size=cache_size if cfg.cache else None, cache_bytes=cfg.cache_gb * 2**30,
                                      skip_bad=cfg.skip_bad, name=name))
    return datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)


def _fraction(reader: Dataset, src: SourceConfig) -> Dataset:
    if not 0 < src.fraction <= 1:
        raise ConfigError(f"fraction={src.fraction} must lie in (0, 1]")
    if src.fraction == 1:
        return reader
    count = max(1, round(len(reader) * src.fraction))
    order = np.random.default_rng(src.seed).permutation(len(reader))
    return Subset(reader, sorted(order[:count].tolist()))


def check_depth_units(reader: Dataset, name: str) -> None:
    """Probe a few frames; raise when their median depth says the depth scale is wrong.

    Raises:
        ValueError: naming the source, the medians found and the expected range.
    """
    n = len(reader)
    medians = []
    for i in sorted({0, n // 2, n - 1})[:_PROBES]:
        try:
            medians.append(valid_median(reader[i][DEPTH]))
        except Exception as e:  # a bad probe frame is reported by training itself (or skipped with skip_bad)
            logger.warning("%s: depth units probe could not read frame %d: %s", name, i, e)
    medians = [m for m in medians if m is not None]
    if not medians:
        return
    problem = units_problem(float(np.median(medians)), getattr(reader, "depth_range", INDOOR_DEPTH_RANGE))
    if problem:
        raise ValueError(f"{name}: {problem} (set the source's depth_scale, or data.check_units=false if the "
                         f"depth really is like this)")
