"""``mask3d-vit`` (also ``python -m mask3d_vit``): one command, one subcommand per job.

Each subcommand lives beside the code it drives and registers itself through an ``add_parser(subparsers)``
function; this file only lists them.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__

# (module, registration function): the order is the order of `mask3d-vit --help`.
COMMANDS = (
    ("mask3d_vit.demo", "add_parser"),
    ("mask3d_vit.data.synthrooms", "add_parser"),
    ("mask3d_vit.data.cli", "add_parser"),
    ("mask3d_vit.tasks.pretrain", "add_parser"),
    ("mask3d_vit.tasks.finetune", "add_parser"),
    ("mask3d_vit.tasks.predict", "add_parser"),
    ("mask3d_vit.models.weights", "add_export_parser"),
    ("mask3d_vit.recipes", "add_parser"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mask3d-vit", description="Mask3D: masked 3D priors for 2D ViTs "
                                     "(Hou et al., CVPR 2023) - pre-train, fine-tune, evaluate, export.")
    parser.add_argument("--version", action="version", version=f"mask3d-vit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, register in COMMANDS:
        getattr(importlib.import_module(module), register)(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        # Bad input and unusable files end in one readable line; MASK3D_DEBUG=1 shows the traceback instead.
        if os.environ.get("MASK3D_DEBUG"):
            raise
        print(f"mask3d-vit {args.command}: error: {e}", file=sys.stderr)
        return 1
    return code or 0
