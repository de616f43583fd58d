"""SynthRooms settings (:class:`SynthRoomsConfig`) and its camera: the NYUv2 Kinect intrinsics at any size,
with a per-frame field of view."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import ConfigError

CLASS_SET = "synthrooms"


# NYUv2's Kinect colour camera at 640x480 (fx, fy, cx, cy), from the dataset's toolbox.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_SIZE = (480, 640)


_INTRINSICS_STREAM = 3  # random streams per frame: 0 layout, 1 appearance, 2 sensor, 3 field of view


@dataclass
class SynthRoomsConfig:
    """Options of the SynthRooms generator. Ranges are ``(low, high)``, drawn uniformly per frame; count ranges are
    inclusive.

    Attributes:
        size: (H, W) of the rendered frames; any aspect (the NYU camera is scaled to cover it and centre-cropped).
        sensor_noise: add Gaussian depth noise of std ``depth_noise[0] + depth_noise[1] * z**2`` metres.
        holes: zero the depth behind depth edges, at grazing angles, in random patches and at random pixels.
        max_depth: sensor range in metres; depth at or beyond it becomes 0 (a hole).
        room_size: range of each horizontal side of the room's bounding box (m).
        room_height: range of the floor-to-ceiling height (m).
        l_shape_prob: probability that a full-height block fills one corner of the room (25-50 % of each side),
            making it L-shaped.
        partition_prob: probability of a partition wall running from a wall 30-65 % of the way across the room.
        num_furniture: count range of furniture pieces (a table's chairs come on top).
        num_wall_items: count range of pictures, windows and wall-mounted TVs.
        num_clutter: count range of book groups and objects on tables, shelves and the floor.
        camera_height: range of the camera's height above the floor (m).
        camera_pitch_deg: range of the camera pitch in degrees (negative = looking down), drawn uniformly: the
            yaw aims at the furniture, the pitch does not, so where a pixel sits says little about what it sees.
        camera_roll_deg: range of the camera roll in degrees.
        focal_scale: range of the focal length as a multiple of the NYU Kinect's at this size (1.0 = its 49.6
            degree vertical field of view; 0.75 = 63 degrees, 1.35 = 38 degrees); the principal point stays.
        grain_size: metres per tile of the fine multiplicative grain every surface carries (its dominant period
            is an eighth of this); the grain fades where finer than about two pixels, so how far it stays visible
            tells distance.
        grain_strength: range of the grain's amplitude per material (0 = none).
        depth_noise: (a, b) of the depth noise std ``a + b * z**2`` (Kinect fit of Nguyen et al., 3DIMPVT 2012).
        hole_patches: count range of random elliptic hole patches (dark or specular surfaces on a real sensor).
        pixel_dropout: fraction of pixels whose depth is dropped at random.
        rgb_noise: std of the (uniform) noise added to the 8-bit colour values.
        camera_light: strength of a white point light at the camera (a headlamp with inverse-square falloff beyond
            half a metre; 0 = none; the room's lights are 0.5-1.2 each with a softer falloff). Its falloff with distance makes brightness a direct, easily learnt depth cue: a control
            case in which colour is known to carry depth, not a realistic setting.
    """
    size: tuple[int, int] = (120, 160)
    sensor_noise: bool = True
    holes: bool = True
    max_depth: float = 10.0
    room_size: tuple[float, float] = (2.5, 9.0)
    room_height: tuple[float, float] = (2.4, 3.6)
    l_shape_prob: float = 0.3
    partition_prob: float = 0.3
    num_furniture: tuple[int, int] = (3, 9)
    num_wall_items: tuple[int, int] = (1, 4)
    num_clutter: tuple[int, int] = (6, 18)
    camera_height: tuple[float, float] = (0.5, 2.1)
    camera_pitch_deg: tuple[float, float] = (-45.0, 15.0)
    camera_roll_deg: tuple[float, float] = (-20.0, 20.0)
    focal_scale: tuple[float, float] = (0.75, 1.35)
    grain_size: float = 0.5
    grain_strength: tuple[float, float] = (0.05, 0.35)
    depth_noise: tuple[float, float] = (0.001, 0.0019)
    hole_patches: tuple[int, int] = (0, 3)
    pixel_dropout: float = 0.002
    rgb_noise: float = 2.0
    camera_light: float = 0.0

    def __post_init__(self):
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"synthrooms size must be (H, W) with positive integers, got {self.size!r}")
        if not self.max_depth > 0:
            raise ConfigError(f"synthrooms max_depth must be > 0 metres, got {self.max_depth!r}")
        for name in ("room_size", "room_height", "num_furniture", "num_wall_items", "num_clutter", "camera_height",
                     "camera_pitch_deg", "camera_roll_deg", "focal_scale", "grain_strength", "hole_patches"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"synthrooms {name}={getattr(self, name)!r}: low end exceeds high end")
        for name in ("num_furniture", "num_wall_items", "num_clutter", "hole_patches", "depth_noise"):
            if min(getattr(self, name)) < 0:
                raise ConfigError(f"synthrooms {name}={getattr(self, name)!r} must not be negative")
        if self.room_size[0] < 2.0 or self.room_height[0] < 2.0:
            raise ConfigError(f"synthrooms rooms need sides and height of at least 2 m (room_size={self.room_size}, "
                              f"room_height={self.room_height})")
        if self.camera_height[0] <= 0.1 or self.camera_height[1] >= self.room_height[0] - 0.1:
            raise ConfigError(f"synthrooms camera_height={self.camera_height} must lie within (0.1, "
                              f"room_height[0] - 0.1 = {self.room_height[0] - 0.1:g}) m")
        if min(self.camera_pitch_deg) <= -90 or max(self.camera_pitch_deg) >= 90:
            raise ConfigError(f"synthrooms camera_pitch_deg={self.camera_pitch_deg} must lie within (-90, 90)")
        for name in ("pixel_dropout", "l_shape_prob", "partition_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"synthrooms {name}={getattr(self, name)!r} must lie in [0, 1]")
        if not self.focal_scale[0] > 0 or not self.grain_size > 0 or self.grain_strength[0] < 0:
            raise ConfigError(f"synthrooms focal_scale={self.focal_scale} and grain_size={self.grain_size} must "
                              f"be positive, grain_strength={self.grain_strength} not negative")
        if self.rgb_noise < 0:
            raise ConfigError(f"synthrooms rgb_noise={self.rgb_noise} must not be negative")


def kinect_intrinsics(size: tuple[int, int]) -> np.ndarray:
    """NYUv2 Kinect intrinsics for an image of ``size = (H, W)``.

    The 640x480 camera is scaled (square pixels) until it covers (H, W), then centre-cropped; for a 3:4 size this is
    plain scaling. Pixel centres sit at integer coordinates.

    Returns:
        float32 (4,): fx, fy, cx, cy in pixels.
    """
    h, w = size
    fx, fy, cx, cy = NYU_INTRINSICS
    s = max(h / NYU_SIZE[0], w / NYU_SIZE[1])
    # A pixel centre x maps to s * (x + 0.5) - 0.5 when scaling, then shifts by the crop offset.
    return np.array([fx * s, fy * s, s * (cx + 0.5) - 0.5 - (NYU_SIZE[1] * s - w) / 2,
                     s * (cy + 0.5) - 0.5 - (NYU_SIZE[0] * s - h) / 2], np.float32)


def frame_intrinsics(index: int, seed: int = 0, cfg: SynthRoomsConfig | None = None) -> np.ndarray:
    """Intrinsics of frame ``index`` of stream ``seed``: :func:`kinect_intrinsics` with the focal length scaled by
    a draw from ``cfg.focal_scale``. Cheap (no rendering): a frames folder records them for frames it keeps.

    Returns:
        float32 (4,): fx, fy, cx, cy in pixels.
    """
    cfg = cfg or SynthRoomsConfig()
    # A stream of its own, so that the field of view never shifts the layout's random draws.
    focal = np.random.default_rng([int(seed), int(index), _INTRINSICS_STREAM]).uniform(*cfg.focal_scale)
    k = kinect_intrinsics(tuple(cfg.size))
    k[:2] *= np.float32(focal)
    return k
