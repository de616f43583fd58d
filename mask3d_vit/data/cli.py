"""``mask3d-vit data {convert,check}``: the command-line face of :mod:`.convert` and :mod:`.check`.

    mask3d-vit data check nyu_depth_v2_labeled.mat
    mask3d-vit data convert nyuv2 nyu_depth_v2_labeled.mat --out data/nyuv2 --class-set nyu13
    mask3d-vit data convert scannet scans/ --out data/scannet --frame-skip 25 --skip-bad
    mask3d-vit data check data/scannet --split train
"""
from __future__ import annotations

import argparse

from .build import FORMATS
from .check import run_check
from .convert import run_convert


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth-scale", type=float, default=0.0,
                        help="stored depth units per metre (1000 = mm, 5000 = TUM, 10000 = 0.1 mm); "
                             "default: the format's own")
    parser.add_argument("--class-set", default="", help="nyuv2 only: nyu40 (default) or nyu13")
    parser.add_argument("--raw-depth", action="store_true",
                        help="nyuv2 / sunrgbd: raw sensor depth (with holes) instead of the filled maps")
    parser.add_argument("--frame-skip", type=int, default=25, help="scannet: keep every N-th frame (default 25)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` with its ``convert`` and ``check`` subcommands on a ``subparsers`` object."""
    data = subparsers.add_parser("data", help="convert and check RGB-D datasets",
                                 description="Convert datasets to the frames-folder layout and check them.")
    commands = data.add_subparsers(dest="data_command", required=True)

    convert = commands.add_parser("convert", help="write a source as a frames folder (resumable)")
    convert.add_argument("format", choices=[f for f in FORMATS if f != "synthrooms"])
    convert.add_argument("path", help="dataset folder or file (.mat, .sens)")
    convert.add_argument("--out", required=True, help="output frames folder")
    convert.add_argument("--splits", default="",
                         help="comma-separated splits to convert (default: the format's official ones; 'all' = "
                              "every frame)")
    convert.add_argument("--skip-bad", action="store_true", help="log and skip unreadable frames")
    _source_options(convert)
    convert.set_defaults(func=run_convert)

    check = commands.add_parser("check", help="report counts, depth units, holes, classes and every bad file")
    check.add_argument("path", help="dataset folder or file")
    check.add_argument("--format", choices=FORMATS[1:], default=None, help="default: guessed from the files")
    check.add_argument("--split", default="all", help="split to check (default: every frame)")
    check.add_argument("--limit", type=int, default=None, help="check only the first N frames")
    _source_options(check)
    check.set_defaults(func=run_check)
    return data
