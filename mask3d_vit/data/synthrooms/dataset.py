"""SynthRooms frames as a map-style dataset, and the ``synthrooms`` data source format (rendered on the fly)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...config import ConfigError
from ..classes import NYU13
from ..registry import DatasetFormat
from ..sample import make_sample
from .settings import CLASS_SET, SynthRoomsConfig
from .render import render_frame

def _frame_id(seed: int, index: int) -> str:
    return f"synthrooms-s{seed}-{index:06d}"


class SynthRooms(torch.utils.data.Dataset):
    """SynthRooms frames rendered on demand, as sample dicts (:func:`mask3d_vit.data.sample.make_sample`) with
    ``label`` (NYU13 ids) and ``instance``.

    Args:
        length: number of frames (indices 0..length-1 of the stream).
        seed: stream seed; frame ``i`` is the same in every process and epoch.
        cfg: generator options (defaults: :class:`SynthRoomsConfig`).
        transform: callable applied to each sample dict.
    """
    classes = NYU13
    class_set = CLASS_SET

    def __init__(self, length: int, *, seed: int = 0, cfg: SynthRoomsConfig | None = None, transform=None):
        if length < 0:
            raise ValueError(f"SynthRooms length must be >= 0, got {length}")
        if seed < 0:
            raise ValueError(f"SynthRooms seed must be >= 0, got {seed}")
        self.length = int(length)
        self.seed = int(seed)
        self.cfg = cfg or SynthRoomsConfig()
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"SynthRooms index {index} out of range for length {self.length}")
        index = int(index) % self.length
        f = render_frame(index, self.seed, self.cfg)
        sample = make_sample(f["rgb"], f["depth"], f["intrinsics"], _frame_id(self.seed, index), label=f["label"],
                             instance=f["instance"], max_depth=self.cfg.max_depth)
        return self.transform(sample) if self.transform else sample



@dataclass
class SynthRoomsSource(SynthRoomsConfig):
    """Options of a synthrooms data source: the frames per epoch and any generator setting of
    :class:`SynthRoomsConfig`, e.g. ``{format: synthrooms, num_frames: 640, seed: 0, num_furniture: [2, 5]}``.

    Attributes:
        num_frames: frames per epoch (indices 0..num_frames-1 of the source's seed).
        size: (H, W) to render at; None (the default) renders at the run's ``data.size``.
    """
    size: tuple[int, int] | None = None
    num_frames: int = 2000

    def __post_init__(self):
        if self.num_frames < 0:
            raise ConfigError(f"synthrooms num_frames must be >= 0, got {self.num_frames}")
        self.generator(self.size or (1, 1))  # SynthRoomsConfig's checks of every other setting

    def generator(self, size: tuple[int, int]) -> SynthRoomsConfig:
        """The generator settings, rendering at ``size`` (H, W) unless the source sets its own."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(SynthRoomsConfig)}
        return SynthRoomsConfig(**{**settings, "size": tuple(self.size or size)})


DATASET_FORMAT = DatasetFormat(
    "synthrooms", open=lambda src, *, size, **_: SynthRooms(
        src.options.num_frames, seed=src.seed, cfg=src.options.generator(size), transform=None),
    options=SynthRoomsSource, class_set=CLASS_SET, default_splits=("train",), generator=True)
