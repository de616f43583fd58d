"""Joint transforms on sample dicts: one geometric change, applied identically to every map of a frame.

A transform takes a sample dict (see :mod:`mask3d_vit.data.sample`) and returns a new one:

- ``rgb`` is resized with torchvision's antialiased bilinear kernel;
- ``label`` and ``instance`` with exact nearest-neighbour sampling (pixel centres, so they stay aligned with RGB and
  ids never mix);
- ``depth`` with a hole-aware resize (:func:`resize_depth`): holes carry no weight, so they never blend into fake
  depth, and ``valid`` is recomputed from the result;
- ``intrinsics`` follow every crop, resize and flip (pixel centres at integers: pixel ``i`` spans ``i +- 0.5``);
- photometric jitter touches ``rgb`` only (or is deferred to the training device, :class:`ColorJitter`).

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

from .sample import DEPTH, INSTANCE, INTRINSICS, JITTER, LABEL, RGB, VALID

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
    """Colour jitter on ``rgb`` only (torchvision's parameters and uint8 arithmetic); depth, labels and geometry are
    untouched.

    With ``deferred`` the colour is left as it is and the sample instead carries its drawn parameters under
    ``jitter`` (:func:`jitter_params`), for :func:`apply_deferred_jitter` to apply per batch on the training device:
    the loader's CPU time then no longer includes the three passes over the image (docs/benchmarks.md). The draws from
    the RNG are the same either way, so the same seed gives the same colour through either path.

    Args:
        brightness, contrast, saturation: as in :class:`torchvision.transforms.v2.ColorJitter`.
        deferred: leave the jitter to :func:`apply_deferred_jitter`.
    """

    def __init__(self, *, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 deferred: bool = False):
        self.jitter = v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation)
        self.deferred = deferred

    def __call__(self, sample: dict) -> dict:
        params = jitter_params(self.jitter.make_params([sample[RGB]]))
        if self.deferred:
            return {**sample, JITTER: params}
        return {**sample, RGB: adjust_colour(sample[RGB][None], params[None])[0]}

    def __repr__(self) -> str:
        return repr(self.jitter) + (" (deferred to the device)" if self.deferred else "")


def jitter_params(params: dict) -> torch.Tensor:
    """torchvision's drawn :class:`~torchvision.transforms.v2.ColorJitter` parameters -> float32 (2, 3): row 0 the
    rank of brightness, contrast and saturation in the order they apply, row 1 their factors (1 = unchanged)."""
    # torchvision's op ids: 0 brightness, 1 contrast, 2 saturation, 3 hue (never drawn here).
    order = [int(i) for i in params["fn_idx"] if int(i) < len(_OPS)]
    factors = [params[f"{name}_factor"] for name in ("brightness", "contrast", "saturation")]
    return torch.tensor([[order.index(op) for op in range(len(_OPS))],
                         [1.0 if f is None else f for f in factors]], dtype=torch.float32)


def _brightness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(image, torch.zeros((), device=image.device), factor)


def _contrast(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(image, _grey(image).mean(dim=(-3, -2, -1), keepdim=True), factor)


def _saturation(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(image, _grey(image), factor)


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    # torchvision's uint8 blend: computed in float, clamped, truncated back to uint8 after every step.
    return (image * ratio + other * (1 - ratio)).clamp_(0, 255).to(torch.uint8)


def _grey(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image.unbind(-3)
    return (r * 0.2989 + g * 0.587 + b * 0.114).floor_().unsqueeze(-3)


_OPS = (_brightness, _contrast, _saturation)


def adjust_colour(rgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply each image's colour jitter, in its own order, as torchvision does to one uint8 image.

    Args:
        rgb: uint8 (B, 3, H, W), on any device.
        params: float32 (B, 2, 3) from :func:`jitter_params`.

    Returns:
        uint8 (B, 3, H, W).
    """
    params = params.to(rgb.device)
    rank, factor = params[:, 0], params[:, 1, :, None, None, None]  # (B, 3), (B, 3, 1, 1, 1)
    out = rgb
    for step in range(len(_OPS)):
        for op, fn in enumerate(_OPS):
            # The images that apply this op at this step: each image sees each op once, as in torchvision.
            chosen = (rank[:, op] == step).nonzero()[:, 0]
            if len(chosen) == len(out):  # always so for one image (the loader's path): no gather and scatter
                out = fn(out, factor[:, op])
            elif len(chosen):
                out = out.index_put((chosen,), fn(out[chosen], factor[chosen, op]))
    return out


def apply_deferred_jitter(batch: dict) -> dict:
    """The trainer's batch hook: the colour jitter that :class:`ColorJitter` deferred, applied to a collated batch
    on its device (``jitter`` removed); a batch without deferred jitter is returned as it is."""
    if not isinstance(batch, dict) or JITTER not in batch:
        return batch
    out = {k: v for k, v in batch.items() if k != JITTER}
    out[RGB] = adjust_colour(batch[RGB], batch[JITTER])
    return out


def train_transform(size: Sequence[int], *, scale: Sequence[float] = (0.5, 1.0), flip: bool = True,
                    jitter: float = 0.2, jitter_on_device: bool = False) -> v2.Compose:
    """Training augmentation: random resized crop to ``size``, horizontal flip, colour jitter.

    Args:
        size: output (H, W).
        scale: crop area range (fraction of the frame).
        flip: mirror half of the samples.
        jitter: brightness / contrast / saturation strength; 0 disables colour jitter.
        jitter_on_device: leave the jitter to the trainer's batch hook (:func:`apply_deferred_jitter`).
    """
    steps = [RandomResizedCrop(size, scale=scale)]
    if flip:
        steps.append(RandomHorizontalFlip())
    if jitter > 0:
        steps.append(ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, deferred=jitter_on_device))
    return v2.Compose(steps)


def eval_transform(size: Sequence[int]) -> CenterResizedCrop:
    """Evaluation: deterministic centre crop at the output's aspect ratio, resized to ``size``."""
    return CenterResizedCrop(size)
