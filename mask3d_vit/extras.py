"""Optional dependencies (the extras of pyproject.toml): import one, or say which pip command installs it."""
from __future__ import annotations

import importlib


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the ``pip install`` that adds it."""


def optional_import(module: str, purpose: str, extra: str = "datasets"):
    """Import ``module`` (e.g. ``"h5py"``), or raise :class:`MissingExtraError` naming ``purpose`` and the extra.

    Args:
        module: the module to import.
        purpose: what needs it, e.g. ``"Reading NYUv2 .mat files"``.
        extra: the extra of ``mask3d-vit`` that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs the optional package {module!r}: "
                                f"pip install 'mask3d-vit[{extra}]'") from None
