"""Joint transforms on sample dicts: one geometric change, applied identically to every map of a frame.

A transform takes a sample dict (see :mod:`mask3d_vit.data.sample`) and returns a new one:

- ``rgb`` is resized with torchvision's antialiased bilinear kernel;
- ``label`` and ``instance`` with exact nearest-neighbour sampling (pixel centres, so they stay aligned with RGB and
  ids never mix);
- ``depth`` with a hole-aware resize (:func:`resize_depth`): holes carry no weight, so they never blend into fake
  depth, and ``valid`` is recomputed from the result;
- ``intrinsics`` follow every crop, resize and flip (pixel centres at integers: pixel ``i`` spans ``i +- 0.5``);
- photometric jitter touches ``rgb`` only.

Randomness comes from torch's global RNG (torchvision's parameter sampling), so a dataset wrapped in
:class:`mask3d_vit.engine.data.SeededDataset` augments reproducibly::

    transform = train_transform((128, 128))      # random resized crop + flip + colour jitter
    sample = transform(dataset[0])               # every map now (.., 128, 128)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from .sample import DEPTH, INSTANCE, INTRINSICS, LABEL, RGB, VALID

_ID_MAPS = (LABEL, INSTANCE)


def resize_depth(depth: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Hole-aware resize of metric depth.

    Each output pixel is the filter-weighted mean of the *valid* input depths under it (antialiased bilinear
    weights, all positive, so the result stays within the range of its neighbours). Where less than half of the
    filter weight falls on valid depth the output is a hole (0): a mostly-missing region stays missing instead of
    being filled by its few valid neighbours.

    Args:
        depth: (1, H, W) float metres, 0 = hole (any float dtype; computed in float32).
        size: output (h, w).

    Returns:
        (1, h, w) float32 metres, 0 = hole.
    """
    size = [int(s) for s in size]
    if list(depth.shape[-2:]) == size:
        return depth.float()
    d = depth.float()[None]                                   # (1, 1, H, W)
    weight = (d > 0).float()
    # Weighted depth and weight as two channels of one call (each channel is resized on its own).
    num, den = nnf.interpolate(torch.cat([d * weight, weight], 1), size=size, mode="bilinear", antialias=True,
                               align_corners=False).unbind(1)
    return torch.where(den >= 0.5, num / den.clamp_min(1e-6), torch.zeros(()))


def resized_crop(sample: dict, top: int, left: int, height: int, width: int, size: Sequence[int]) -> dict:
    """Crop the box (top, left, height, width) out of every map of ``sample`` and resize it to ``size``.

    Args:
        sample: sample dict; the box must lie inside the frame.
        top, left, height, width: crop box in input pixels.
        size: output (H, W).
    """
    h, w = sample[RGB].shape[-2:]
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise ValueError(f"crop box (top={top}, left={left}, height={height}, width={width}) "
                         f"does not fit a {h}x{w} frame")
    size = [int(s) for s in size]
    out = dict(sample)
    out[RGB] = tvf.resized_crop(sample[RGB], top, left, height, width, size,
                                interpolation=InterpolationMode.BILINEAR, antialias=True)
    out[DEPTH] = resize_depth(sample[DEPTH][..., top:top + height, left:left + width], size)
    out[VALID] = out[DEPTH] > 0
    for key in _ID_MAPS:
        if key in sample:
            out[key] = tvf.resized_crop(sample[key][None], top, left, height, width, size,
                                        interpolation=InterpolationMode.NEAREST_EXACT)[0]
    if INTRINSICS in sample:
        fx, fy, cx, cy = sample[INTRINSICS].tolist()
        sy, sx = size[0] / height, size[1] / width
        out[INTRINSICS] = torch.tensor([fx * sx, fy * sy, (cx - left + 0.5) * sx - 0.5, (cy - top + 0.5) * sy - 0.5],
                                       dtype=torch.float32)
    return out


def hflip(sample: dict) -> dict:
    """Mirror every map of ``sample`` left-right (and the principal point with it)."""
    out = dict(sample)
    for key in (RGB, DEPTH, VALID) + _ID_MAPS:
        if key in sample:
            out[key] = sample[key].flip(-1)
    if INTRINSICS in sample:
        width = sample[RGB].shape[-1]
        k = sample[INTRINSICS].clone()
        k[2] = width - 1 - k[2]
        out[INTRINSICS] = k
    return out


def center_box(height: int, width: int, size: Sequence[int]) -> tuple[int, int, int, int]:
    """Largest centred (top, left, height, width) box of a height x width frame with the aspect ratio of ``size``."""
    aspect = size[1] / size[0]
    box_h, box_w = (height, round(height * aspect)) if width / height >= aspect else (round(width / aspect), width)
    box_h, box_w = min(max(box_h, 1), height), min(max(box_w, 1), width)
    return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


def crop_cover_size(size: Sequence[int], *, scale: Sequence[float] = (0.5, 1.0),
                    ratio: Sequence[float] = (3 / 4, 4 / 3)) -> tuple[int, int]:
    """The smallest frame (H, W), of the output's aspect ratio, whose :class:`RandomResizedCrop` crops to ``size``
    are never upsampled: its smallest crop (area ``scale[0]`` at the most extreme aspect ratio of ``ratio``, relative
    to the output's) still spans ``size``. (240, 320) with the defaults: (392, 523).

    Args:
        size: output (H, W).
        scale: the crop's area range (fraction of the frame).
        ratio: the crop's aspect ratio range relative to the output's.
    """
    shrink = math.sqrt(scale[0] * min(ratio[0], 1 / ratio[1]))  # a crop's shortest side over the frame's
    return math.ceil(size[0] / shrink - 1e-6), math.ceil(size[1] / shrink - 1e-6)


def shrink_to_cover(sample: dict, size: Sequence[int]) -> dict:
    """Downscale ``sample`` (keeping its aspect ratio) to the smallest frame that still covers ``size``.

    Used to store decoded frames compactly: a crop at ``size`` of the whole stored frame reads at most the detail
    this keeps, and for random resized crops ``size`` is :func:`crop_cover_size` of the output size, so they are
    never upsampled either. Frames already no larger than that are returned unchanged (never upsampled).
    """
    h, w = sample[RGB].shape[-2:]
    scale = max(size[0] / h, size[1] / w)
    if scale >= 1:
        return sample
    out_size = (max(size[0], math.ceil(h * scale - 1e-6)), max(size[1], math.ceil(w * scale - 1e-6)))
    return resized_crop(sample, 0, 0, h, w, out_size)


class RandomResizedCrop:
    """Random crop of random area and aspect ratio, resized to ``size`` (torchvision's parameter sampling).

    Args:
        size: output (H, W).
        scale: range of the crop's area as a fraction of the frame's area.
        ratio: range of the crop's aspect ratio (w / h) *relative to the output's*, so 1.0 means no distortion on
            any output shape.
    """

    def __init__(self, size: Sequence[int], *, scale: Sequence[float] = (0.5, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3)):
        self.size = tuple(int(s) for s in size)
        aspect = self.size[1] / self.size[0]
        self._sampler = v2.RandomResizedCrop(self.size, scale=tuple(scale),
                                             ratio=(ratio[0] * aspect, ratio[1] * aspect))

    def __call__(self, sample: dict) -> dict:
        p = self._sampler.make_params([sample[RGB]])
        return resized_crop(sample, p["top"], p["left"], p["height"], p["width"], self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, scale={self._sampler.scale})"


class CenterResizedCrop:
    """Deterministic: the largest centred crop with the output's aspect ratio, resized to ``size``.

    Args:
        size: output (H, W).
    """

    def __init__(self, size: Sequence[int]):
        self.size = tuple(int(s) for s in size)

    def __call__(self, sample: dict) -> dict:
        return resized_crop(sample, *center_box(*sample[RGB].shape[-2:], self.size), self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


class RandomHorizontalFlip:
    """Mirror the whole sample with probability ``p``.

    Args:
        p: flip probability.
    """

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: dict) -> dict:
        return hflip(sample) if torch.rand(()) < self.p else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class ColorJitter:
    """torchvision's colour jitter on ``rgb`` only; depth, labels and geometry are untouched.

    Args:
        brightness, contrast, saturation, hue: as in :class:`torchvision.transforms.v2.ColorJitter`.
    """

    def __init__(self, *, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 hue: float = 0.0):
        self.jitter = v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)

    def __call__(self, sample: dict) -> dict:
        return {**sample, RGB: self.jitter(sample[RGB])}

    def __repr__(self) -> str:
        return repr(self.jitter)


def train_transform(size: Sequence[int], *, scale: Sequence[float] = (0.5, 1.0), flip: bool = True,
                    jitter: float = 0.2) -> v2.Compose:
    """Training augmentation: random resized crop to ``size``, horizontal flip, colour jitter.

    Args:
        size: output (H, W).
        scale: crop area range (fraction of the frame).
        flip: mirror half of the samples.
        jitter: brightness / contrast / saturation strength; 0 disables colour jitter.
    """
    steps = [RandomResizedCrop(size, scale=scale)]
    if flip:
        steps.append(RandomHorizontalFlip())
    if jitter > 0:
        steps.append(ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    return v2.Compose(steps)


def eval_transform(size: Sequence[int]) -> CenterResizedCrop:
    """Evaluation: deterministic centre crop at the output's aspect ratio, resized to ``size``."""
    return CenterResizedCrop(size)
