"""``mask3d-vit data check``: read every frame of a source and report what is in it and what is wrong.

The report gives counts, resolutions, the depth range, the median depth (a warning when it is outside the format's
plausible range, usually a wrong depth scale), the hole fraction, the class histogram and, per split, how many frames
it has and how many of them carry labels, then every problem with its file: a missing partner file, a split list
naming a frame without files, an unreadable or truncated file, mismatched sizes, label ids outside the class set,
a source without any valid depth (errors); a frame without valid depth, a grayscale colour image (warnings).
The command exits non-zero when there are errors.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, parse_override
from .build import SourceConfig, open_source
from .classes import get_class_set
from .formats.common import NoFramesError, units_problem, valid_median
from .frames import INDOOR_DEPTH_RANGE
from .registry import detect_format, get_format
from .sample import DEPTH, LABEL, RGB, VALID


@dataclass
class CheckReport:
    """What :func:`check_source` found."""
    source: str
    frames: int = 0
    resolutions: Counter = field(default_factory=Counter)   # (W, H) -> frame count
    depth_min: float = float("inf")
    depth_max: float = 0.0
    medians: list[float] = field(default_factory=list)       # per-frame median of valid depth, metres
    holes: list[float] = field(default_factory=list)         # per-frame fraction of pixels without depth
    class_set: str | None = None
    class_pixels: Counter = field(default_factory=Counter)   # label id -> pixel count
    labelled: int = 0
    splits: dict = field(default_factory=dict)               # split -> (frames, labelled frames or None) or a reason
    no_depth: list[str] = field(default_factory=list)        # ids of frames without any valid depth pixel
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def format(self) -> str:
        """Human-readable summary, errors and warnings last."""
        lines = [f"{self.source}: {self.frames} frames read, {len(self.errors)} errors, {len(self.warnings)} warnings"]
        if self.resolutions:
            lines.append("  resolutions (W x H): " + ", ".join(
                f"{w}x{h} ({n})" for (w, h), n in self.resolutions.most_common()))
        if self.medians:
            lines.append(f"  depth: {self.depth_min:.3f}-{self.depth_max:.3f} m, "
                         f"median {np.median(self.medians):.3f} m, holes {100 * np.mean(self.holes):.1f} % of pixels")
        if self.class_set:
            names = get_class_set(self.class_set).names
            total = sum(self.class_pixels.values()) or 1
            top = ", ".join(f"{names[i] if i < len(names) else i} {100 * n / total:.1f}%"
                            for i, n in self.class_pixels.most_common(12))
            lines.append(f"  labels ({self.class_set}): {self.labelled}/{self.frames} frames; {top}")
        for name, counts in self.splits.items():
            if isinstance(counts, str):
                lines.append(f"  split {name}: unavailable ({counts})")
                continue
            frames, labelled = counts
            said = f"{frames} frames" if frames else "no frames"
            if frames and self.class_set:
                said += ", labels not counted" if labelled is None else f", {labelled} with labels"
            lines.append(f"  split {name}: {said}")
        lines += [f"  ERROR {e}" for e in self.errors]
        lines += [f"  WARNING {w}" for w in self.warnings]
        return "\n".join(lines)


def check_source(src: SourceConfig, *, split: str | None = None, limit: int | None = None,
                 progress: bool = False) -> CheckReport:
    """Read every frame of ``src`` (or the first ``limit``) and collect statistics and problems.

    Args:
        src: the source to check (format, root, depth_scale...).
        split: split to read; None for every frame.
        limit: read at most this many frames.
        progress: show a progress bar.
    """
    report = CheckReport(source=f"{src.format} {src.root}")
    try:
        reader = open_source(src, split=split)
    except Exception as e:  # a source that cannot even be indexed is one error with its reason
        report.errors.append(str(e))
        return report
    report.errors += list(getattr(reader, "problems", []))
    report.class_set = getattr(reader, "class_set", None)
    top = get_class_set(report.class_set).num_classes if report.class_set else None
    count = len(reader) if limit is None else min(limit, len(reader))
    indices = range(count)
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc="check", unit="frame")
    for i in indices:
        try:
            sample = reader[i]
        except Exception as e:  # every failure is reported with the reader's message (which names the file)
            report.errors.append(str(e))
            continue
        _add_frame(report, sample, top)
    if report.no_depth and len(report.no_depth) == report.frames:
        report.errors.append(f"{src.root}: none of the {report.frames} frames read has valid depth (every depth "
                             f"pixel is 0 or missing): check the depth files and --depth-scale")
    else:
        report.warnings += [f"frame {fid!r}: no valid depth at all" for fid in report.no_depth]
    if report.medians:
        problem = units_problem(float(np.median(report.medians)), getattr(reader, "depth_range", INDOOR_DEPTH_RANGE))
        if problem:
            report.warnings.append(f"{src.root}: {problem}")
    names = [split] if split is not None else get_format(src.format).splits_of(src.root)
    report.splits = {name: _split_counts(src, name) for name in names if name != "all"}
    return report


def _split_counts(src: SourceConfig, split: str) -> tuple[int, int | None] | str:
    """(frames, frames with a label map) of one split, the count None where the reader cannot tell without decoding;
    or why the split cannot be opened."""
    try:
        reader = open_source(src, split=split)
    except NoFramesError:
        return 0, 0
    except Exception as e:  # a split list the source lacks: said in the report, not an error of the data
        return str(e)
    try:
        return len(reader), sum(reader.labelled(i) for i in range(len(reader)))
    except (AttributeError, NotImplementedError):  # a registered reader without labelled(index)
        return len(reader), None


def _add_frame(report: CheckReport, sample: dict, top: int | None) -> None:
    report.frames += 1
    h, w = sample[RGB].shape[-2:]
    report.resolutions[(w, h)] += 1
    fid = sample["frame_id"]
    rgb = sample[RGB]
    if bool((rgb[0] == rgb[1]).all()) and bool((rgb[1] == rgb[2]).all()):
        report.warnings.append(f"frame {fid!r}: the colour image is grayscale (R = G = B everywhere); the colour "
                               f"encoder expects colour images")
    depth, valid = sample[DEPTH], sample[VALID]
    report.holes.append(1.0 - float(valid.float().mean()))
    median = valid_median(depth)
    if median is None:
        report.no_depth.append(fid)
    else:
        report.medians.append(median)
        report.depth_min = min(report.depth_min, float(depth[valid].min()))
        report.depth_max = max(report.depth_max, float(depth[valid].max()))
    if LABEL in sample:
        report.labelled += 1
        ids, counts = torch.unique(sample[LABEL], return_counts=True)
        report.class_pixels.update(dict(zip(ids.tolist(), counts.tolist())))
        bad = [i for i in ids.tolist() if i < 0 or (top is not None and i > top)]
        if bad:
            report.errors.append(f"frame {fid!r}: label ids {bad} outside the class set {report.class_set} "
                                 f"(0..{top})")


def run_check(args) -> int:
    """CLI entry: print the report; exit status 1 when it holds errors."""
    src = source_from_args(args)
    report = check_source(src, split=None if args.split == "all" else args.split, limit=args.limit,
                          progress=not args.quiet)
    print(report.format())
    return 1 if report.errors else 0


def source_from_args(args) -> SourceConfig:
    """A SourceConfig from the shared ``data`` CLI options (path, --format, --depth-scale, format options...)."""
    if not Path(args.path).exists():
        raise FileNotFoundError(f"{args.path}: no such file or folder")
    fmt = get_format(args.format or detect_format(args.path))
    if fmt.generator:
        raise ValueError(f"format {fmt.name} renders its frames instead of reading files; write them to a frames "
                         f"folder with `mask3d-vit synth` and check or convert that")
    return SourceConfig(fmt.name, root=str(args.path), depth_scale=args.depth_scale or 0.0, **source_options(args))


def source_options(args) -> dict:
    """The format options given on the command line: ``--option KEY=VALUE`` and the shorthands --class-set,
    --raw-depth and --frame-skip (each only when given, so the format's default applies otherwise)."""
    options = {key: value for key, value in (("class_set", args.class_set), ("raw_depth", args.raw_depth or None),
                                             ("frame_skip", args.frame_skip)) if value is not None}
    for text in args.options:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise ConfigError(f"format option {text!r}: expected KEY=VALUE with a plain key, e.g. class_set=nyu13")
        options[keys[0]] = value
    return options
