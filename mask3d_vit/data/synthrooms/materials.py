"""Materials: patterns, colours and grain drawn from one distribution for every surface, and their texture lookup."""
from __future__ import annotations

import functools
import math

import numpy as np

_NOISE_TILE = 256  # texels per side of the shared value-noise texture (a power of two: indices wrap with &)


_SOLID, _STRIPES, _CHECKER, _NOISE, _GRADIENT = range(5)
_PATTERN_PROB = np.array([0.3, 0.2, 0.12, 0.23, 0.15])
_PATTERN_SCALE = np.array([(1.0, 1.0), (0.02, 0.4), (0.05, 0.5), (0.3, 3.0), (0.5, 3.0)])  # metres per unit, range
# Dominant spatial frequency of each pattern, in cycles per pattern unit (noise: its mid octaves).
_PATTERN_FREQUENCY = np.array([0.0, 1.0, 1.0, 8.0, 1 / (2 * math.pi)])
# Columns of a material row.
_PATTERN, _COLOUR_A, _COLOUR_B, _INV_SCALE, _COS, _SIN, _OFFSET_U, _OFFSET_V, _GRAIN, _CYCLES = (
    0, slice(1, 4), slice(4, 7), 7, 8, 9, 10, 11, 12, 13)


def _random_colours(rng, count: int) -> np.ndarray:
    """(count, 3) linear RGB: a random hue, desaturated towards grey by a random amount, at a random brightness."""
    base = rng.random((count, 3))
    grey = base.mean(1, keepdims=True)
    rgb = grey + rng.uniform(0.0, 1.0, (count, 1)) * (base - grey)
    rgb *= rng.uniform(0.2, 1.0, (count, 1)) / np.maximum(rgb.max(1, keepdims=True), 1e-3)
    return rgb ** 2.2  # to linear light, where shading is computed


def _sample_materials(rng, count: int, grain_strength: tuple[float, float]) -> np.ndarray:
    """(count, 14) float32 material rows (columns above), all drawn from the one distribution that every surface
    shares, so that appearance never reveals the class. A pattern maps surface coordinates (metres), turned by an
    angle, scaled and offset, to a mix of two colours; grain, of amplitude drawn from ``grain_strength``, adds fine
    multiplicative noise."""
    pattern = np.minimum(np.searchsorted(np.cumsum(_PATTERN_PROB), rng.random(count)), len(_PATTERN_PROB) - 1)
    a = _random_colours(rng, count)
    b = np.where(rng.random((count, 1)) < 0.5, a * rng.uniform(0.3, 0.9, (count, 1)), _random_colours(rng, count))
    lo, hi = np.log(_PATTERN_SCALE[pattern]).T
    inv_scale = np.exp(-rng.uniform(lo, hi))
    angle = np.where(rng.random(count) < 0.4, rng.uniform(0, math.pi, count), rng.integers(0, 2, count) * math.pi / 2)
    return np.column_stack([pattern, a, b, inv_scale, np.cos(angle), np.sin(angle), rng.random((count, 2)),
                            rng.uniform(*grain_strength, count), inv_scale * _PATTERN_FREQUENCY[pattern]]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """Flat float32 (T*T,) tileable fractal value noise in [0, 1]; fixed seed, so identical in every process."""
    t = _NOISE_TILE
    rng = np.random.default_rng(20230301)
    tile = np.zeros((t, t))
    for cells, amplitude in ((4, 0.45), (8, 0.25), (16, 0.15), (32, 0.1), (64, 0.05)):
        x = np.arange(t) * cells / t
        i0 = np.floor(x).astype(int)
        f = x - i0
        f = f * f * (3 - 2 * f)  # smoothstep hides the lattice
        i1 = (i0 + 1) % cells
        grid = rng.random((cells, cells))
        rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]
        tile += amplitude * (rows[:, i0] * (1 - f) + rows[:, i1] * f)
    tile = ((tile - tile.min()) / (tile.max() - tile.min())).astype(np.float32).ravel()
    tile.flags.writeable = False  # shared by every frame
    return tile


def _lookup_noise(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Noise tile at surface coordinates (one tile per unit), nearest texel, wrapping."""
    t = _NOISE_TILE
    # Truncation instead of floor only shifts the texel grid by one around 0, where nothing can tell.
    iu = (u * t).astype(np.int32) & (t - 1)
    iv = (v * t).astype(np.int32) & (t - 1)
    return np.take(_noise_tile(), iv * t + iu)


def _albedo(materials: np.ndarray, index: np.ndarray, u: np.ndarray, v: np.ndarray, footprint: np.ndarray,
            grain_size: float) -> np.ndarray:
    """Procedural texture.

    Args:
        materials: (M, 14) material table.
        index: (N,) material of each pixel.
        u, v: (N,) surface coordinates in metres.
        footprint: (N,) size of the pixel on the surface in metres; patterns finer than about two pixels fade to
            their mean instead of aliasing into moire (a box filter in spirit, at no cost).
        grain_size: metres per tile of the grain, the same on every surface: how fine it looks tells distance.

    Returns:
        (N, 3) linear RGB.
    """
    material = np.take(materials, index, axis=0)  # np.take: several times faster than fancy indexing here
    pattern, inv, c, s = material[:, _PATTERN], material[:, _INV_SCALE], material[:, _COS], material[:, _SIN]
    pu = (c * u - s * v) * inv + material[:, _OFFSET_U]
    pv = (s * u + c * v) * inv + material[:, _OFFSET_V]
    fu = np.floor(pu)
    squares = fu + np.floor(pv)
    mix = np.where(pattern == _STRIPES, pu - fu < 0.5,
                   np.where(pattern == _CHECKER, squares - 2 * np.floor(squares * 0.5),  # parity, without fmod
                            np.where(pattern == _NOISE, _lookup_noise(pu, pv),
                                     np.where(pattern == _GRADIENT, 0.5 + 0.5 * np.sin(pu), 0.5))))
    mix += (0.5 - mix) * np.clip(4 * footprint * material[:, _CYCLES] - 1, 0, 1)
    inv_grain = 1.0 / grain_size
    grain = _lookup_noise(u * inv_grain + material[:, _OFFSET_U], v * inv_grain + material[:, _OFFSET_V]) - 0.5
    grain *= 1 - np.clip(4 * footprint * (_PATTERN_FREQUENCY[_NOISE] * inv_grain) - 1, 0, 1)
    # Contiguous (N, 3) colours: arithmetic on strided column views of ``material`` is several times slower.
    a, b = np.take(materials[:, _COLOUR_A], index, axis=0), np.take(materials[:, _COLOUR_B], index, axis=0)
    return (a + (b - a) * mix[:, None]) * (1 + 2 * material[:, _GRAIN] * grain)[:, None]
