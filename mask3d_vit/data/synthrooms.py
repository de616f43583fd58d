"""SynthRooms: procedural indoor RGB-D frames, rendered on the fly, so the whole method runs before any download.

A frame is a room (a box, sometimes L-shaped or split by a partition wall, sometimes with a pillar and recessed
windows) furnished with beds, tables, chairs, sofas, cabinets and bookshelves assembled from boxes and vertical
cylinders, with pictures, windows and TVs on the walls and books and other objects on tables, shelves and the floor,
seen by a camera whose height, pitch, roll and field of view vary widely, so that a pixel's position says little
about its depth or class. Colours and textures (solid, stripes, checkers, noise, gradients, laid out in metres, plus
a grain of one world scale that fades with distance) come from one distribution for every surface whatever its
class, so only geometry, shading and texture scale tell a table from a wall: the prior that Mask3D's masked depth
reconstruction is meant to teach.

Conventions:

- World: metres, z up, floor at z = 0; the room spans [0, Lx] x [0, Ly] x [0, Lz].
- Camera: OpenCV axes (x right, y down, z forward). Pixel (u, v) has its centre at integer coordinates, so its ray is
  ((u - cx) / fx, (v - cy) / fy, 1) and the ray parameter of a hit is its z-depth (not the ray length).
- Labels: NYU13 ids (:data:`mask3d_vit.data.classes.NYU13`, 0 = unlabeled: only rays that hit nothing, which a closed
  room does not allow). Instances: one id per object (every primitive of a bed shares one id; every book has its
  own); walls, floor, ceiling and pillars are stuff and get instance 0.
- Frame ``i`` of seed ``s`` depends only on ``(s, i)`` and the config (the random generators are seeded with
  ``[s, i, stream]``), so workers, order and resumption never change it; the scene and the clean depth do not
  depend on the sensor switches either.

Rendering: for each primitive, a slab test vectorised over the pixels of its projected bounding rectangle updates a
z-buffer of (depth, primitive index). A deferred pass then recovers, per pixel, the face, normal and 2D surface
coordinates from the winning primitive; they drive the textures, Lambertian shading (point lights plus ambient) and
the sensor model (noise growing with z^2, holes behind depth edges, at grazing angles and in random patches).

Usage::

    frame = render_frame(17, seed=0)                     # dict of numpy arrays
    dataset = SynthRooms(10_000, seed=0)                 # sample dicts (mask3d_vit.data.sample) for a DataLoader
    write_synthrooms("data/synth", 2000)                 # a frames folder on disk

    mask3d-vit synth --out data/synth --num 2000 --size 120x160 --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..config import ConfigError, load_config, to_dict
from .classes import NYU13
from .frames import FramesWriter, read_meta
from .registry import DatasetFormat
from .sample import make_sample

__all__ = ["SynthRoomsConfig", "SynthRooms", "render_frame", "write_synthrooms", "kinect_intrinsics",
           "frame_intrinsics"]

CLASS_SET = "synthrooms"
DEPTH_SCALE = 1000.0  # millimetres in the frames folder's uint16 depth PNGs
# NYUv2's Kinect colour camera at 640x480 (fx, fy, cx, cy), from the dataset's toolbox.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_SIZE = (480, 640)

_LABEL = {name: i for i, name in enumerate(NYU13)}
BED, BOOKS, CEILING, CHAIR, FLOOR, FURNITURE, OBJECTS, PICTURE, SOFA, TABLE, TV, WALL, WINDOW = (
    _LABEL[n] for n in ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
                        "table", "tv", "wall", "window"))
_STUFF = (WALL, FLOOR, CEILING)

_BOX, _CYLINDER = 0, 1
# Sensor model constants (Kinect-like): a neighbour at least this much farther (relative) is a depth edge, whose
# far side the projector shadows; surfaces seen at a grazing angle return no depth.
_EDGE_JUMP = 0.05
_EDGE_HOLE_PROB = 0.75
_GRAZING_COS = 0.12
_INTRINSICS_STREAM = 3  # random streams per frame: 0 layout, 1 appearance, 2 sensor, 3 field of view
_NOISE_TILE = 256  # texels per side of the shared value-noise texture (a power of two: indices wrap with &)


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


# --------------------------------------------------------------------------------------------------------------
# Scene description: primitives grouped into objects, placed in the room
# --------------------------------------------------------------------------------------------------------------

class _Part(NamedTuple):
    """One primitive in its object's frame: a box (half extents along the part's own axes, turned by ``yaw``) or a
    vertical cylinder (``half = (r, r, half height)``)."""
    kind: int
    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    material: int


class _Shelf(NamedTuple):
    """A support rectangle in its object's frame (centre at ``z``), with free height ``clearance`` above it."""
    x: float
    y: float
    z: float
    half_w: float
    half_d: float
    clearance: float
    books: bool  # bookshelf compartments hold rows of upright books


@dataclass
class _Object:
    """Parts in the object's frame: x along its width, y from front (-) to back (+), z up from its base."""
    label: int
    parts: list[_Part]
    shelves: list[_Shelf] = field(default_factory=list)


@dataclass
class _Surface:
    """A placed support rectangle (world pose) and the 2D rectangles (surface frame) already taken on it."""
    x: float
    y: float
    z: float
    yaw: float
    half_w: float
    half_d: float
    clearance: float
    books: bool
    taken: list[tuple[float, float, float, float]] = field(default_factory=list)


def _box(x0, x1, y0, y1, z0, z1, material, yaw=0.0) -> _Part:
    return _Part(_BOX, ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2),
                 yaw, material)


def _cylinder(x, y, r, z0, z1, material) -> _Part:
    return _Part(_CYLINDER, (x, y, (z0 + z1) / 2), (r, r, (z1 - z0) / 2), 0.0, material)


def _pick(rng, options, weights=None):
    """One of ``options``, with probabilities proportional to ``weights`` (uniform if None); cheaper than
    ``Generator.choice`` for the handful of options layout draws from."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    r = rng.random() * sum(weights)
    for option, w in zip(options, weights):
        r -= w
        if r < 0:
            return option
    return options[-1]


def _rotate(x, y, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    return c * x - s * y, s * x + c * y


# Layout runs on plain floats: a frame places a few hundred parts, where numpy's per-call cost would dominate.
_AABB = tuple[float, float, float, float, float, float]  # xmin, ymin, zmin, xmax, ymax, zmax


def _group_aabb(objects: list[_Object], x, y, z, yaw) -> _AABB:
    """World AABB of objects sharing one frame placed at (x, y, z) and turned by ``yaw``."""
    c0, s0 = math.cos(yaw), math.sin(yaw)
    x0 = y0 = z0 = math.inf
    x1 = y1 = z1 = -math.inf
    for obj in objects:
        for p in obj.parts:
            px, py, pz = p.centre
            cx, cy, cz = x + c0 * px - s0 * py, y + s0 * px + c0 * py, z + pz
            hx, hy, hz = p.half
            if p.kind == _BOX:  # extent of the turned box along world x and y
                c, s = (abs(c0), abs(s0)) if p.yaw == 0 else (abs(math.cos(yaw + p.yaw)), abs(math.sin(yaw + p.yaw)))
                hx, hy = c * hx + s * hy, s * hx + c * hy
            x0, x1 = min(x0, cx - hx), max(x1, cx + hx)
            y0, y1 = min(y0, cy - hy), max(y1, cy + hy)
            z0, z1 = min(z0, cz - hz), max(z1, cz + hz)
    return x0, y0, z0, x1, y1, z1


def _object_aabb(obj: _Object, x, y, z, yaw) -> _AABB:
    return _group_aabb([obj], x, y, z, yaw)


def _overlap(a: _AABB, b: _AABB) -> bool:
    return a[0] < b[3] and b[0] < a[3] and a[1] < b[4] and b[1] < a[4] and a[2] < b[5] and b[2] < a[5]


class _Scene:
    """Primitive table under construction, plus the layout state (occupied volumes, support surfaces, openings).

    Row ``k`` of the table describes primitive ``k``; primitive 0 is the room, seen from inside.
    """

    def __init__(self, room: tuple[float, float, float]):
        self.room = room
        self.prims: list[list[float]] = []     # cx, cy, cz, hx, hy, hz, cos(yaw), sin(yaw), kind, normal sign
        self.face_labels: list[list[int]] = []  # 6 per primitive: -x, +x, -y, +y, -z, +z (a cylinder's side is 0)
        self.face_materials: list[list[int]] = []
        self.instances: list[int] = []
        self.num_materials = 0                 # drawn after the layout, all at once (see _sample_materials)
        self.occupied: list[_AABB] = []         # everything standing in the room, for collision tests
        self.surfaces: list[_Surface] = []
        self.openings: list[tuple[int, float, float, float, float]] = []  # wall, s0, s1, z0, z1 (window holes)
        self.objects: list[tuple[float, float, float]] = []  # camera targets: furniture centres at top height
        self.num_instances = 0

    def material(self) -> int:
        """Index of a new material."""
        self.num_materials += 1
        return self.num_materials - 1

    def add_prim(self, kind, centre, half, yaw, labels, materials, instance, sign=1.0):
        self.prims.append([*centre, *half, math.cos(yaw), math.sin(yaw), kind, sign])
        self.face_labels.append(list(labels))
        self.face_materials.append(list(materials))
        self.instances.append(instance)

    def fits(self, aabb: _AABB, *, inside: bool = True, ignore: tuple[int, ...] = ()) -> bool:
        """True when ``aabb`` stays in the room (if ``inside``) and overlaps no occupied volume but ``ignore``."""
        eps = 1e-6
        if inside and (min(aabb[:3]) < -eps or any(aabb[3 + i] > self.room[i] + eps for i in range(3))):
            return False
        return not any(_overlap(aabb, b) for i, b in enumerate(self.occupied) if i not in ignore)

    def place(self, obj: _Object, x, y, z, yaw, *, check: bool = True, inside: bool = True,
              ignore: tuple[int, ...] = ()) -> bool:
        """Add ``obj`` with its origin at (x, y, z) turned by ``yaw``, unless ``check`` finds it colliding."""
        aabb = _object_aabb(obj, x, y, z, yaw)
        if check and not self.fits(aabb, inside=inside, ignore=ignore):
            return False
        instance = 0
        if obj.label not in _STUFF:
            self.num_instances += 1
            instance = self.num_instances
        for p in obj.parts:
            px, py = _rotate(p.centre[0], p.centre[1], yaw)
            self.add_prim(p.kind, (x + px, y + py, z + p.centre[2]), p.half, yaw + p.yaw, [obj.label] * 6,
                          [p.material] * 6, instance)
        self.occupied.append(aabb)
        for s in obj.shelves:
            sx, sy = _rotate(s.x, s.y, yaw)
            self.surfaces.append(_Surface(x + sx, y + sy, z + s.z, yaw, s.half_w, s.half_d, s.clearance, s.books))
        return True

    def wall_pose(self, wall: int, s: float, offset: float) -> tuple[float, float, float]:
        """(x, y, yaw) at ``s`` metres along ``wall`` (0: x=0, 1: x=Lx, 2: y=0, 3: y=Ly), ``offset`` metres into
        the room, turned so that an object's back (+y) faces the wall."""
        lx, ly, _ = self.room
        return ((offset, s, math.pi / 2), (lx - offset, s, -math.pi / 2), (s, offset, math.pi),
                (s, ly - offset, 0.0))[wall]

    def wall_length(self, wall: int) -> float:
        return self.room[1] if wall < 2 else self.room[0]


# --------------------------------------------------------------------------------------------------------------
# Object builders (object frame; materials are drawn by the caller, independently of the class)
# --------------------------------------------------------------------------------------------------------------

def _bed(rng, m) -> _Object:
    w, d = rng.uniform(0.9, 1.9), rng.uniform(1.9, 2.2)
    frame, mattress = rng.uniform(0.2, 0.35), rng.uniform(0.15, 0.25)
    head, board = rng.uniform(0.8, 1.2), rng.uniform(0.04, 0.08)
    top = frame + mattress
    back = d / 2 - board
    parts = [_box(-w / 2, w / 2, -d / 2, back, 0, frame, m[0]),
             _box(-w / 2 + 0.03, w / 2 - 0.03, -d / 2 + 0.03, back - 0.02, frame, top, m[1]),
             _box(-w / 2, w / 2, back, d / 2, 0, head, m[0])]
    n = 1 if w < 1.3 else 2
    pw, pd = (w - 0.1) / n - 0.06, rng.uniform(0.35, 0.45)
    for i in range(n):
        x = -w / 2 + 0.05 + (i + 0.5) * (w - 0.1) / n
        parts.append(_box(x - pw / 2, x + pw / 2, back - 0.05 - pd, back - 0.05, top, top + rng.uniform(0.1, 0.16),
                          m[2]))
    if rng.random() < 0.6:  # a blanket over the foot end, hanging over the sides
        parts.append(_box(-w / 2 - 0.02, w / 2 + 0.02, -d / 2 - 0.02, back - 0.05 - pd - rng.uniform(0.05, 0.3),
                          top - 0.2, top + 0.03, m[2]))
    if rng.random() < 0.3:
        parts.append(_box(-w / 2, w / 2, -d / 2 - board, -d / 2, 0, top + rng.uniform(0.05, 0.3), m[0]))
    return _Object(BED, parts)


def _legs(half_w, half_d, inset, size, z1, material, round_legs) -> list[_Part]:
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (half_w - inset - size / 2), sy * (half_d - inset - size / 2)
            out.append(_cylinder(x, y, size / 2, 0, z1, material) if round_legs else
                       _box(x - size / 2, x + size / 2, y - size / 2, y + size / 2, 0, z1, material))
    return out


def _table(rng, m) -> _Object:
    h = rng.uniform(0.7, 0.78) if rng.random() < 0.75 else rng.uniform(0.38, 0.5)  # dining/desk or coffee table
    t = rng.uniform(0.025, 0.06)
    if rng.random() < 0.25:
        r = rng.uniform(0.4, 0.65)
        parts = [_cylinder(0, 0, r, h - t, h, m[0]), _cylinder(0, 0, rng.uniform(0.03, 0.07), 0, h - t, m[1]),
                 _cylinder(0, 0, r * rng.uniform(0.35, 0.6), 0, rng.uniform(0.02, 0.05), m[1])]
        return _Object(TABLE, parts, [_Shelf(0, 0, h, r * 0.7, r * 0.7, 1.0, False)])
    w = rng.uniform(0.8, 2.0)
    d = rng.uniform(0.55, min(1.1, w))
    parts = [_box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, m[0])]
    parts += _legs(w / 2, d / 2, rng.uniform(0.0, 0.1), rng.uniform(0.035, 0.08), h - t, m[1], rng.random() < 0.3)
    if h < 0.6 and rng.random() < 0.5:  # coffee table with a lower shelf
        parts.append(_box(-w / 2 + 0.05, w / 2 - 0.05, -d / 2 + 0.05, d / 2 - 0.05, 0.1, 0.13, m[0]))
    elif h > 0.6 and rng.random() < 0.3:  # desk with a drawer block under one end
        bw = rng.uniform(0.35, 0.45)
        parts.append(_box(w / 2 - bw, w / 2 - 0.02, -d / 2 + 0.02, d / 2 - 0.02, 0.05, h - t, m[1]))
    return _Object(TABLE, parts, [_Shelf(0, 0, h, w / 2 - 0.05, d / 2 - 0.05, 1.0, False)])


def _chair(rng, m) -> _Object:
    w, d = rng.uniform(0.38, 0.5), rng.uniform(0.38, 0.5)
    h, t = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.07)
    back, bt = rng.uniform(0.3, 0.5), rng.uniform(0.025, 0.06)
    seat = _box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, m[0])
    if rng.random() < 0.3:  # office chair: column on a round base, back on a short gap
        parts = [seat, _cylinder(0, 0, rng.uniform(0.02, 0.035), 0.06, h - t, m[1]),
                 _cylinder(0, 0, rng.uniform(0.24, 0.3), 0, rng.uniform(0.04, 0.07), m[1]),
                 _box(-w / 2 + 0.02, w / 2 - 0.02, d / 2 - bt, d / 2, h + 0.06, h + 0.06 + back, m[0])]
        if rng.random() < 0.5:
            for sx in (-1, 1):
                parts.append(_box(sx * w / 2 - 0.03, sx * w / 2 + 0.03, -d / 4, d / 3, h + 0.18, h + 0.21, m[1]))
        return _Object(CHAIR, parts)
    leg = rng.uniform(0.025, 0.045)
    parts = [seat] + _legs(w / 2, d / 2, 0.01, leg, h - t, m[1], rng.random() < 0.3)
    if rng.random() < 0.4:  # two rear posts with rails
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.01 - leg / 2)
            parts.append(_box(x - leg / 2, x + leg / 2, d / 2 - 0.01 - leg, d / 2 - 0.01, h, h + back, m[1]))
        for z in (h + back - 0.06, h + back / 2):
            parts.append(_box(-w / 2 + 0.01, w / 2 - 0.01, d / 2 - 0.01 - leg, d / 2 - 0.01, z - 0.03, z + 0.03,
                              m[0]))
    else:
        parts.append(_box(-w / 2, w / 2, d / 2 - bt, d / 2, h, h + back, m[0]))
    return _Object(CHAIR, parts)


def _sofa(rng, m) -> _Object:
    seats = int(rng.integers(1, 4))
    arm = rng.uniform(0.1, 0.22)
    sw = rng.uniform(0.55, 0.75)
    w, d = seats * sw + 2 * arm, rng.uniform(0.8, 1.0)
    h, back_h, back_d = rng.uniform(0.38, 0.45), rng.uniform(0.75, 0.95), rng.uniform(0.15, 0.25)
    cushion = rng.uniform(0.08, 0.14)
    feet = 0.05 if rng.random() < 0.5 else 0.0
    base_top = h - cushion
    parts = [_box(-w / 2, w / 2, -d / 2, d / 2, feet, base_top, m[0]),
             _box(-w / 2, w / 2, d / 2 - back_d, d / 2, feet, back_h, m[0])]
    arm_h = rng.uniform(0.55, 0.68)
    parts += [_box(-w / 2, -w / 2 + arm, -d / 2, d / 2, feet, arm_h, m[0]),
              _box(w / 2 - arm, w / 2, -d / 2, d / 2, feet, arm_h, m[0])]
    if feet:
        parts += _legs(w / 2, d / 2, 0.03, 0.05, feet, m[2], True)
    upright = rng.random() < 0.5
    for i in range(seats):
        x0 = -w / 2 + arm + i * sw
        front = d / 2 - back_d - (rng.uniform(0.12, 0.18) if upright else 0.0)
        parts.append(_box(x0 + 0.01, x0 + sw - 0.01, -d / 2 + 0.02, front, base_top, h, m[1]))
        if upright:  # back cushions standing against the backrest
            parts.append(_box(x0 + 0.02, x0 + sw - 0.02, front, d / 2 - back_d, h, h + rng.uniform(0.3, 0.4), m[1]))
    return _Object(SOFA, parts)


# Width, depth and height ranges (m) of dressers, wardrobes, nightstands and sideboards.
_CABINET_SIZES = (((0.8, 1.6), (0.4, 0.55), (0.7, 1.1)), ((0.5, 1.2), (0.4, 0.6), (1.5, 2.1)),
                  ((0.4, 0.55), (0.35, 0.45), (0.45, 0.65)), ((1.2, 2.2), (0.45, 0.6), (0.4, 0.95)))


def _cabinet(rng, m) -> _Object:
    w, d, h = (rng.uniform(*r) for r in _pick(rng, _CABINET_SIZES))
    plinth = rng.uniform(0.05, 0.1) if rng.random() < 0.5 else 0.0
    slab = rng.uniform(0.02, 0.04) if rng.random() < 0.5 else 0.0
    parts = [_box(-w / 2, w / 2, -d / 2, d / 2, plinth, h - slab, m[0])]
    if plinth:
        parts.append(_box(-w / 2 + 0.04, w / 2 - 0.04, -d / 2 + 0.04, d / 2 - 0.04, 0, plinth, m[1]))
    if slab:
        parts.append(_box(-w / 2 - 0.02, w / 2 + 0.02, -d / 2 - 0.02, d / 2, h - slab, h, m[1]))
    rows = max(1, min(4, int((h - plinth) / rng.uniform(0.25, 0.5))))
    cols = 2 if w > 0.9 else 1
    hw, hh, out = rng.uniform(0.06, 0.18), rng.uniform(0.015, 0.03), rng.uniform(0.015, 0.03)
    for r in range(rows):
        z = plinth + (h - slab - plinth) * (r + 0.75) / rows
        for c in range(cols):
            x = w * ((c + 0.5) / cols - 0.5)
            parts.append(_box(x - hw / 2, x + hw / 2, -d / 2 - out, -d / 2, z - hh / 2, z + hh / 2, m[2]))
    return _Object(FURNITURE, parts, [_Shelf(0, 0, h, w / 2 - 0.03, d / 2 - 0.03, 1.0, False)])


def _bookshelf(rng, m) -> _Object:
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(0.8, 2.1)
    t, base = rng.uniform(0.015, 0.03), rng.uniform(0.04, 0.1)
    n = max(1, round((h - base) / rng.uniform(0.28, 0.4)))
    parts = [_box(-w / 2, -w / 2 + t, -d / 2, d / 2, 0, h, m[0]),  # sides
             _box(w / 2 - t, w / 2, -d / 2, d / 2, 0, h, m[0]),
             _box(-w / 2, w / 2, d / 2 - 0.01, d / 2, 0, h, m[1]),  # back panel
             _box(-w / 2 + t, w / 2 - t, -d / 2, d / 2, 0, base, m[0])]  # plinth
    levels = [base + (h - base) * i / n for i in range(n + 1)]
    shelves = []
    for i, z in enumerate(levels[1:], 1):
        parts.append(_box(-w / 2 + t, w / 2 - t, -d / 2, d / 2 - 0.01, z - t, z, m[0]))
        bottom = levels[i - 1]
        shelves.append(_Shelf(0, -0.005, bottom, w / 2 - t - 0.01, d / 2 - 0.02, z - t - bottom, True))
    shelves.append(_Shelf(0, 0, h, w / 2 - 0.02, d / 2 - 0.02, 1.0, False))
    return _Object(FURNITURE, parts, shelves)


def _tv(rng, m, width) -> _Object:
    """A wall-mounted 16:9 screen, its back at y = 0."""
    t = rng.uniform(0.03, 0.09)
    h = width * 9 / 16
    return _Object(TV, [_box(-width / 2, width / 2, -t, 0, 0, h, m[0])])


def _standing_tv(rng, m, width) -> _Object:
    """A 16:9 screen on a neck and a flat foot, standing at z = 0."""
    t, foot = rng.uniform(0.03, 0.09), rng.uniform(0.05, 0.12)
    h = width * 9 / 16
    return _Object(TV, [_box(-width / 2, width / 2, -t / 2, t / 2, foot, foot + h, m[0]),
                        _box(-0.04, 0.04, -0.02, 0.02, 0, foot, m[1]),
                        _box(-width / 6, width / 6, -0.1, 0.1, 0, 0.015, m[1])])


def _picture(rng, m) -> _Object:
    w, h, t = rng.uniform(0.25, 1.2), rng.uniform(0.25, 0.9), rng.uniform(0.015, 0.04)
    return _Object(PICTURE, [_box(-w / 2, w / 2, -t, 0, 0, h, m[0])])


def _window(rng, m, width, z0, z1, wall_thickness) -> _Object:
    """A window recessed into the wall: reveals and a pane beyond the wall plane (y > 0), a sill inside."""
    pane = rng.uniform(0.4, 1.0) * wall_thickness
    x0, x1, e = -width / 2, width / 2, 0.05
    parts = [_box(x0 - e, x0, 0, pane, z0, z1, m[0]), _box(x1, x1 + e, 0, pane, z0, z1, m[0]),
             _box(x0 - e, x1 + e, 0, pane, z1, z1 + e, m[0]),
             _box(x0 - e, x1 + e, -rng.uniform(0.03, 0.12), pane, z0 - 0.04, z0, m[0]),
             _box(x0, x1, pane, pane + 0.02, z0, z1, m[1])]
    bar = rng.uniform(0.03, 0.06)
    if rng.random() < 0.5:
        parts.append(_box(-bar / 2, bar / 2, pane - 0.05, pane, z0, z1, m[0]))
    if rng.random() < 0.4:
        z = z0 + (z1 - z0) * rng.uniform(0.55, 0.75)
        parts.append(_box(x0, x1, pane - 0.05, pane, z - bar / 2, z + bar / 2, m[0]))
    return _Object(WINDOW, parts)


def _books_row(rng, m, shelf: _Surface, length) -> list[_Object]:
    """Upright books side by side along x from 0, each its own object (origin at the row's start)."""
    out, x = [], 0.0
    while True:
        t = rng.uniform(0.015, 0.05)
        if x + t > length:
            return out
        h = min(rng.uniform(0.15, 0.3), shelf.clearance - 0.02)
        d = min(rng.uniform(0.12, 0.22), 2 * shelf.half_d)
        out.append(_Object(BOOKS, [_box(x, x + t, -d / 2, d / 2, 0, h, m[int(rng.integers(len(m)))])]))
        x += t + rng.uniform(0.0, 0.01)


def _books_stack(rng, m) -> list[_Object]:
    """Books lying flat, each its own object, each a little turned."""
    out, z = [], 0.0
    for _ in range(int(rng.integers(1, 5))):
        w, d, t = rng.uniform(0.13, 0.22), rng.uniform(0.18, 0.28), rng.uniform(0.015, 0.05)
        out.append(_Object(BOOKS, [_box(-w / 2, w / 2, -d / 2, d / 2, z, z + t, m[int(rng.integers(len(m)))],
                                        rng.uniform(-0.3, 0.3))]))
        z += t
    return out


def _small_object(rng, m, on_floor: bool) -> _Object:
    kind = _pick(rng, ("box", "cylinder", "lamp", "bottle") + (("bin", "floor_lamp", "plant") if on_floor else ()))
    s = 2.0 if on_floor else 1.0
    if kind == "box":
        w, d, h = rng.uniform(0.05, 0.3, 3) * s
        return _Object(OBJECTS, [_box(-w / 2, w / 2, -d / 2, d / 2, 0, h, m[0])])
    if kind == "cylinder":
        return _Object(OBJECTS, [_cylinder(0, 0, rng.uniform(0.03, 0.12) * s, 0, rng.uniform(0.05, 0.35) * s, m[0])])
    if kind == "bottle":
        r, h = rng.uniform(0.025, 0.05), rng.uniform(0.15, 0.3)
        return _Object(OBJECTS, [_cylinder(0, 0, r, 0, h * 0.7, m[0]), _cylinder(0, 0, r * 0.35, h * 0.7, h, m[0])])
    if kind in ("lamp", "floor_lamp"):
        pole, shade = (rng.uniform(1.2, 1.6), rng.uniform(0.15, 0.25)) if kind == "floor_lamp" else (
            rng.uniform(0.2, 0.4), rng.uniform(0.08, 0.16))
        sh = shade * rng.uniform(0.8, 1.4)
        return _Object(OBJECTS, [_cylinder(0, 0, shade * 0.7, 0, 0.03, m[1]),
                                 _cylinder(0, 0, 0.012, 0.03, pole, m[1]),
                                 _cylinder(0, 0, shade, pole - sh * 0.3, pole + sh * 0.7, m[0])])
    if kind == "bin":
        return _Object(OBJECTS, [_cylinder(0, 0, rng.uniform(0.1, 0.2), 0, rng.uniform(0.25, 0.45), m[0])])
    r, h = rng.uniform(0.1, 0.2), rng.uniform(0.2, 0.4)  # plant: pot and a wider, taller foliage column
    return _Object(OBJECTS, [_cylinder(0, 0, r, 0, h, m[0]),
                             _cylinder(0, 0, r * rng.uniform(1.3, 2.0), h, h + rng.uniform(0.3, 0.9), m[1])])


# --------------------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------------------

class _Camera(NamedTuple):
    origin: np.ndarray  # (3,) world position
    rotation: np.ndarray  # (3, 3) camera-to-world: columns are the camera's x (right), y (down), z (forward) axes
    pitch_deg: float
    roll_deg: float


def _camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    c, s = math.cos(roll), math.sin(roll)
    return np.stack([c * right + s * down, c * down - s * right, forward], axis=1)


def _layout(rng: np.random.Generator, cfg: SynthRoomsConfig) -> tuple[_Scene, _Camera, list]:
    """Sample a furnished room, its lights and a camera inside it."""
    lx, ly = rng.uniform(*cfg.room_size, size=2).tolist()
    lz = rng.uniform(*cfg.room_height)
    scene = _Scene((lx, ly, lz))
    wall_mat = scene.material()
    walls = [wall_mat] * 4
    if rng.random() < 0.25:  # an accent wall
        walls[int(rng.integers(4))] = scene.material()
    scene.add_prim(_BOX, (lx / 2, ly / 2, lz / 2), (lx / 2, ly / 2, lz / 2), 0.0, [WALL] * 4 + [FLOOR, CEILING],
                   walls + [scene.material(), scene.material()], 0, sign=-1.0)

    _shape_room(scene, rng, cfg, wall_mat)
    if rng.random() < 0.3:  # a pillar against a wall, part of the wall
        wall = int(rng.integers(4))
        w, d = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.5)
        x, y, yaw = scene.wall_pose(wall, rng.uniform(w / 2, scene.wall_length(wall) - w / 2), d / 2)
        scene.place(_Object(WALL, [_box(-w / 2, w / 2, -d / 2, d / 2, 0, lz, wall_mat)]), x, y, 0.0, yaw)

    kinds = rng.choice(["picture", "window", "tv"], p=[0.5, 0.35, 0.15],
                       size=int(rng.integers(cfg.num_wall_items[0], cfg.num_wall_items[1] + 1)))
    thickness = rng.uniform(0.1, 0.25)
    for _ in range(int(np.sum(kinds == "window"))):
        _place_window(scene, rng, thickness)

    # The camera goes in before the furniture and keeps a free column around itself, so nothing hides the view;
    # the column must miss the corner block, partition and pillar.
    for _ in range(50):
        cx, cy = rng.uniform(0.5, lx - 0.5), rng.uniform(0.5, ly - 0.5)
        column = (cx - 0.35, cy - 0.35, 0.0, cx + 0.35, cy + 0.35, lz)
        if scene.fits(column):
            break
    height = rng.uniform(*cfg.camera_height)
    scene.occupied.append(column)

    _furnish(scene, rng, int(rng.integers(cfg.num_furniture[0], cfg.num_furniture[1] + 1)))
    for kind in kinds[kinds != "window"]:
        _place_wall_item(scene, rng, kind)
    _place_clutter(scene, rng, int(rng.integers(cfg.num_clutter[0], cfg.num_clutter[1] + 1)))

    lights = []
    for _ in range(int(rng.integers(1, 4))):
        position = np.array([rng.uniform(0.2, 0.8) * lx, rng.uniform(0.2, 0.8) * ly, lz - 0.25])
        tint = np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.6, 1.0)])  # warm white...
        if rng.random() < 0.3:
            tint = tint[::-1]  # ...or cool white
        lights.append((position, rng.uniform(0.5, 1.2) * tint))

    # Turn towards a piece of furniture at least 1.2 m away most of the time (as a person scanning a room would),
    # else towards any point of the room. The pitch is drawn on its own: aiming it too would tie the horizon, and
    # so each pixel's depth, to the camera height.
    far = [t for t in scene.objects if math.hypot(t[0] - cx, t[1] - cy) > 1.2]
    if far and rng.random() < 0.7:
        target = far[int(rng.integers(len(far)))]
    else:
        target = (rng.uniform(0, lx), rng.uniform(0, ly))
    yaw = math.atan2(target[1] - cy, target[0] - cx) + rng.uniform(-0.35, 0.35)
    pitch = rng.uniform(*cfg.camera_pitch_deg)
    roll = rng.uniform(*cfg.camera_roll_deg)
    camera = _Camera(np.array([cx, cy, height]), _camera_rotation(yaw, math.radians(pitch), math.radians(roll)),
                     pitch, roll)
    return scene, camera, lights


def _shape_room(scene: _Scene, rng, cfg: SynthRoomsConfig, material: int) -> None:
    """Make the box room L-shaped (a full-height block in one corner) and/or split it with a partition wall from
    one wall part of the way across; both are wall, in the walls' material."""
    lx, ly, lz = scene.room
    if rng.random() < cfg.l_shape_prob:
        w, d = rng.uniform(0.25, 0.5) * lx, rng.uniform(0.25, 0.5) * ly
        x, y = (w / 2, lx - w / 2)[int(rng.integers(2))], (d / 2, ly - d / 2)[int(rng.integers(2))]
        scene.place(_Object(WALL, [_box(-w / 2, w / 2, -d / 2, d / 2, 0, lz, material)]), x, y, 0.0, 0.0)
    if rng.random() < cfg.partition_prob:
        wall = int(rng.integers(4))
        length = scene.wall_length(wall)
        across = scene.room[0] + scene.room[1] - length
        t, reach = rng.uniform(0.08, 0.15), rng.uniform(0.3, 0.65) * across
        x, y, yaw = scene.wall_pose(wall, rng.uniform(0.3, 0.7) * length, reach / 2)
        # Turned like a wall-standing object, so its depth axis (y) runs into the room.
        scene.place(_Object(WALL, [_box(-t / 2, t / 2, -reach / 2, reach / 2, 0, lz, material)]), x, y, 0.0, yaw)


def _place_window(scene: _Scene, rng, thickness) -> None:
    lz = scene.room[2]
    for _ in range(10):
        wall = int(rng.integers(4))
        length = scene.wall_length(wall)
        w = rng.uniform(0.6, min(1.8, length - 0.6))
        z0 = rng.uniform(0.5, 1.0)
        z1 = min(z0 + rng.uniform(0.8, 1.6), lz - 0.15)
        s = rng.uniform(w / 2 + 0.2, length - w / 2 - 0.2)
        x, y, yaw = scene.wall_pose(wall, s, 0.0)
        obj = _window(rng, (scene.material(), scene.material()), w, z0, z1, thickness)
        if scene.place(obj, x, y, 0.0, yaw, inside=False):
            scene.openings.append((wall, s - w / 2, s + w / 2, z0, z1))
            return


def _against_wall(scene: _Scene, rng, obj: _Object, gap: float, z: float = 0.0, tries: int = 10):
    """Place ``obj`` with its back ``gap`` metres from a random wall; returns its pose or None."""
    aabb = _object_aabb(obj, 0, 0, 0, 0)
    half_w, back = max(-aabb[0], aabb[3]), aabb[4]
    for _ in range(tries):
        wall = int(rng.integers(4))
        length = scene.wall_length(wall)
        if length < 2 * half_w + 0.02:
            continue
        x, y, yaw = scene.wall_pose(wall, rng.uniform(half_w + 0.01, length - half_w - 0.01), back + gap)
        if scene.place(obj, x, y, z, yaw):
            return x, y, yaw
    return None


def _free_standing(scene: _Scene, rng, obj: _Object, tries: int = 10):
    lx, ly, _ = scene.room
    for _ in range(tries):
        x, y = rng.uniform(0.3, lx - 0.3), rng.uniform(0.3, ly - 0.3)
        yaw = rng.uniform(0, 2 * math.pi) if rng.random() < 0.5 else int(rng.integers(4)) * math.pi / 2
        if scene.place(obj, x, y, 0.0, yaw):
            return x, y, yaw
    return None


def _furnish(scene: _Scene, rng, count: int) -> None:
    kinds = ("bed", "table", "chair", "sofa", "cabinet", "bookshelf", "media")
    # Per-room weights: some rooms are bedrooms, some dining rooms, some offices, without naming them.
    weights = rng.dirichlet(np.full(len(kinds), 0.8))
    beds = 0
    for _ in range(count):
        kind = _pick(rng, kinds, weights)
        mats = (scene.material(), scene.material(), scene.material())
        first = len(scene.occupied)  # the main piece's AABB lands here, before any chairs or TV
        if kind == "bed":
            if beds:
                continue
            pose = _against_wall(scene, rng, _bed(rng, mats), rng.uniform(0.0, 0.05))
            beds += pose is not None
        elif kind == "table":
            table = _table(rng, mats)
            desk = rng.random() < 0.3
            pose = (_against_wall(scene, rng, table, 0.02) if desk else _free_standing(scene, rng, table))
            if pose is not None:
                _chairs_around(scene, rng, table, pose, 1 if desk else int(rng.integers(0, 5)))
        elif kind == "chair":
            pose = _free_standing(scene, rng, _chair(rng, mats))
        elif kind == "sofa":
            sofa = _sofa(rng, mats)
            pose = _against_wall(scene, rng, sofa, 0.05) if rng.random() < 0.8 else _free_standing(scene, rng, sofa)
        elif kind == "media":  # a low cabinet with a standing TV on it
            cabinet = _cabinet(rng, mats)
            pose = _against_wall(scene, rng, cabinet, 0.02)
            if pose is not None:
                top = scene.surfaces[-1]
                if top.z < 1.0 and top.half_w > 0.35:
                    # At most 1.6 m wide, and clear of the ceiling with its foot (<= 0.12 m) in a low room.
                    width = min(1.6, 2 * top.half_w * rng.uniform(0.6, 0.95), (scene.room[2] - top.z - 0.3) * 16 / 9)
                    tv = _standing_tv(rng, (scene.material(), mats[1]), width)
                    scene.place(tv, top.x, top.y, top.z, top.yaw, check=False)
                    top.taken.append((-top.half_w, top.half_w, -top.half_d, top.half_d))
        elif kind == "cabinet":
            pose = _against_wall(scene, rng, _cabinet(rng, mats), 0.02)
        else:
            shelf = _bookshelf(rng, mats)
            pose = _against_wall(scene, rng, shelf, 0.02)
            if pose is not None:  # bookshelves come mostly filled, whatever the clutter budget
                for surface in scene.surfaces[-len(shelf.shelves):]:
                    if surface.books and rng.random() < 0.75:
                        books = (scene.material(), scene.material(), scene.material())
                        row = _books_row(rng, books, surface, 2 * surface.half_w * rng.uniform(0.4, 1.0))
                        _put_on(scene, rng, surface, row, on_floor=False)
        if pose is not None:
            box = scene.occupied[first]
            scene.objects.append(((box[0] + box[3]) / 2, (box[1] + box[4]) / 2, min(max(box[5], 0.4), 1.2)))


def _chairs_around(scene: _Scene, rng, table: _Object, pose, count: int) -> None:
    """Chairs facing the table from its sides, tucked a little under its top (so they may overlap its volume)."""
    x, y, yaw = pose
    table_index = len(scene.occupied) - 1
    extent = _object_aabb(table, 0, 0, 0, 0)
    for side in rng.permutation(4)[:count]:
        chair = _chair(rng, (scene.material(), scene.material()))
        half_d = _object_aabb(chair, 0, 0, 0, 0)[4]
        reach = extent[3 + (side >= 2)] + half_d * rng.uniform(-0.5, 0.3)
        lx, ly = ((-reach, 0.0), (reach, 0.0), (0.0, -reach), (0.0, reach))[side]
        dx, dy = _rotate(lx, ly, yaw)
        # A chair's front is -y: turn it so that -y points from the chair to the table.
        chair_yaw = math.atan2(-dx, dy) + rng.uniform(-0.2, 0.2)
        scene.place(chair, x + dx, y + dy, 0.0, chair_yaw, ignore=(table_index,))


def _place_wall_item(scene: _Scene, rng, kind: str) -> None:
    lz = scene.room[2]
    mats = (scene.material(),)
    for _ in range(10):
        if kind == "picture":
            obj, z = _picture(rng, mats), rng.uniform(1.0, 1.6)
        else:
            obj, z = _tv(rng, mats, rng.uniform(0.8, 1.6)), rng.uniform(0.9, 1.4)
        top = _object_aabb(obj, 0, 0, 0, 0)[5]
        if z + top < lz - 0.05 and _against_wall(scene, rng, obj, 0.0, z, tries=1):
            return


def _place_clutter(scene: _Scene, rng, count: int) -> None:
    lx, ly, lz = scene.room
    floor = _Surface(lx / 2, ly / 2, 0.0, 0.0, lx / 2, ly / 2, lz, False)
    for _ in range(count):
        weights = [1.0] + [2.0 if s.books else 1.5 for s in scene.surfaces]
        surface = _pick(rng, [floor] + scene.surfaces, weights)
        mats = tuple(scene.material() for _ in range(3))
        if surface.books and rng.random() < 0.8:
            length = 2 * surface.half_w * rng.uniform(0.3, 0.9)
            items = _books_row(rng, mats, surface, length)
        elif surface is not floor and rng.random() < 0.35:
            items = _books_stack(rng, mats)
        else:
            items = [_small_object(rng, mats, surface is floor)]
        _put_on(scene, rng, surface, items, on_floor=surface is floor)


def _put_on(scene: _Scene, rng, surface: _Surface, items: list[_Object], on_floor: bool) -> None:
    """Put a group of objects (sharing one frame) at a random free spot of ``surface``."""
    if not items:
        return
    x0, y0, _, x1, y1, z1 = _group_aabb(items, 0, 0, 0, 0)
    if x1 - x0 > 2 * surface.half_w or y1 - y0 > 2 * surface.half_d or z1 > surface.clearance:
        return
    for _ in range(5):
        # Surface-frame offset of the group's frame, keeping its extent on the surface.
        u = rng.uniform(-surface.half_w - x0, surface.half_w - x1)
        v = rng.uniform(-surface.half_d - y0, surface.half_d - y1)
        rect = (u + x0, u + x1, v + y0, v + y1)
        if any(a0 < rect[1] and rect[0] < a1 and b0 < rect[3] and rect[2] < b1 for a0, a1, b0, b1 in surface.taken):
            continue
        dx, dy = _rotate(u, v, surface.yaw)
        x, y = surface.x + dx, surface.y + dy
        if on_floor and not scene.fits(_group_aabb(items, x, y, 0.0, surface.yaw)):
            continue  # on the floor it must also miss the furniture
        surface.taken.append(rect)
        for obj in items:
            scene.place(obj, x, y, surface.z, surface.yaw, check=False)
        return


# --------------------------------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------------
# Ray casting and shading (pixel attributes are flat over N = H * W pixels)
# --------------------------------------------------------------------------------------------------------------

def _pixel_rays(size: tuple[int, int], intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame rays of the pixel centres, float32 (3, H, W) ``((u - cx) / fx, (v - cy) / fy, 1)``, and the
    inverse of their lengths, float32 (N,) (rotation keeps lengths)."""
    h, w = size
    fx, fy, cx, cy = intrinsics.tolist()
    rays = np.ones((3, h, w), np.float32)
    rays[0] = ((np.arange(w, dtype=np.float32) - np.float32(cx)) / np.float32(fx))[None]
    rays[1] = ((np.arange(h, dtype=np.float32) - np.float32(cy)) / np.float32(fy))[:, None]
    inv_norm = 1 / np.sqrt(np.square(rays).sum(0)).reshape(-1)
    return rays, inv_norm


def _slab(o: float, h: float, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit ray parameters of the slab |o + t d| <= h, given ``inv = 1 / d``. fmin/fmax ignore the NaN of
    0 * inf (a ray in the slab's boundary plane)."""
    t1, t2 = (-h - o) * inv, (h - o) * inv
    return np.fmin(t1, t2), np.fmax(t1, t2)


def _screen_rects(prims: np.ndarray, camera: _Camera, size, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each primitive can appear, from the 8 corners of its world AABB, through ``intrinsics`` (fx, fy, cx,
    cy).

    Returns:
        rects: int (P, 4) pixel rectangles (v0, v1, u0, u1) holding the projection (empty when unseen).
        near: float (P,) smallest camera z of the corners, a lower bound on the primitive's depth.
    """
    h, w = size
    fx, fy, cx, cy = intrinsics.tolist()
    centre, half, c, s = prims[:, 0:3], prims[:, 3:6], np.abs(prims[:, 6]), np.abs(prims[:, 7])
    box = prims[:, 8] == _BOX
    ext = half.copy()
    ext[box, 0] = c[box] * half[box, 0] + s[box] * half[box, 1]
    ext[box, 1] = s[box] * half[box, 0] + c[box] * half[box, 1]
    signs = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)]) * 2 - 1  # (8, 3) corner signs
    corners = centre[:, None] + signs[None] * ext[:, None]  # (P, 8, 3)
    rel = corners - camera.origin
    # World -> camera frame, written out: numpy's matmul would call multi-threaded BLAS, which fights the
    # DataLoader's worker processes for the cores (about a third of the throughput lost on 2 cores).
    cam = rel[..., 0:1] * camera.rotation[0] + rel[..., 1:2] * camera.rotation[1] + rel[..., 2:3] * camera.rotation[2]
    z = cam[..., 2]
    zc = np.maximum(z, 1e-6)
    u, v = fx * cam[..., 0] / zc + cx, fy * cam[..., 1] / zc + cy
    rects = np.stack([np.floor(v.min(1)), np.floor(v.max(1)) + 2, np.floor(u.min(1)), np.floor(u.max(1)) + 2], 1)
    rects = np.clip(rects, 0, [h, h, w, w]).astype(np.int64)
    # A box straddling the camera plane can cover any pixel; one wholly behind it covers none.
    rects[(z < 0.01).any(1)] = (0, h, 0, w)
    rects[(z <= 0).all(1)] = (0, 0, 0, 0)
    return rects, z.min(1)


def _cast(scene: _Scene, prims: np.ndarray, camera: _Camera, rays: np.ndarray,
          intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer over all primitives. ``rays: (3, H, W)`` world directions with unit camera-z component, cast through
    ``intrinsics`` (fx, fy, cx, cy).

    Returns:
        depth: float32 (H, W) z-depth of the nearest hit, inf where nothing is hit.
        prim: int32 (H, W) index of the primitive hit, -1 where nothing is hit.
    """
    dx, dy, dz = rays
    o = camera.origin.tolist()  # Python floats keep the arithmetic in the rays' float32
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = 1.0 / rays
        # Room (primitive 0) seen from inside: the nearest exit of the three slabs.
        exits = np.stack([_slab(o[a] - scene.room[a] / 2, scene.room[a] / 2, inv[a])[1] for a in range(3)])
        depth = exits.min(0)
        for wall, s0, s1, z0, z1 in scene.openings:
            axis, along = (0, 1) if wall < 2 else (1, 0)
            toward = rays[axis] < 0 if wall % 2 == 0 else rays[axis] > 0
            hit_s, hit_z = o[along] + depth * rays[along], o[2] + depth * dz
            hole = (exits[axis] == depth) & toward & (hit_s > s0) & (hit_s < s1) & (hit_z > z0) & (hit_z < z1)
            depth[hole] = np.inf  # through the window: the recess and pane (objects beyond the wall) take over
        prim = np.where(np.isfinite(depth), 0, -1).astype(np.int32)

        rects, nearest = _screen_rects(prims, camera, rays.shape[1:], intrinsics)
        rows, rects, nearest = prims.tolist(), rects.tolist(), nearest.tolist()  # Python scalars: cheaper per use
        # Front to back, so that a primitive hidden behind everything already drawn is skipped with one reduction.
        for k in sorted(range(1, len(rows)), key=nearest.__getitem__):
            v0, v1, u0, u1 = rects[k]
            if v0 >= v1 or u0 >= u1:
                continue
            win = (slice(v0, v1), slice(u0, u1))
            z = depth[win]
            if nearest[k] >= z.max():
                continue
            cx, cy, cz, hx, hy, hz, c, s, kind, _ = rows[k]
            ox, oy, oz = o[0] - cx, o[1] - cy, o[2] - cz
            zin, zout = _slab(oz, hz, inv[2][win])
            if kind == _CYLINDER:  # |(o + t d)_xy|^2 = r^2 (half-b form), intersected with the z slab
                ddx, ddy = dx[win], dy[win]
                a = ddx * ddx + ddy * ddy
                b = ox * ddx + oy * ddy
                root = np.sqrt(b * b - a * (ox * ox + oy * oy - hx * hx))  # NaN when the ray misses: no hit below
                near = np.maximum((-b - root) / a, zin)
                far = np.minimum((-b + root) / a, zout)
            else:
                if abs(s) < 1e-6 or abs(c) < 1e-6:  # turned by a multiple of 90 degrees: world slabs, shared 1 / d
                    ex, ey = (hx, hy) if abs(s) < 1e-6 else (hy, hx)
                    xin, xout = _slab(ox, ex, inv[0][win])
                    yin, yout = _slab(oy, ey, inv[1][win])
                else:  # slabs in the box frame (turned by -yaw about z)
                    xin, xout = _slab(c * ox + s * oy, hx, 1.0 / (c * dx[win] + s * dy[win]))
                    yin, yout = _slab(c * oy - s * ox, hy, 1.0 / (c * dy[win] - s * dx[win]))
                near = np.maximum(np.maximum(xin, yin), zin)
                far = np.minimum(np.minimum(xout, yout), zout)
            hit = (near <= far) & (near < z)
            if nearest[k] <= 0:  # the camera plane cuts the primitive: keep only hits in front of the camera
                hit &= near > 0
            np.copyto(z, near, where=hit)
            np.copyto(prim[win], k, where=hit)
    return depth, prim


class _Surfaces(NamedTuple):
    """Surface attributes of each pixel's hit."""
    point: np.ndarray  # (3, N) world hit point (x, y, z rows)
    normal: np.ndarray  # (3, N) unit world normal, facing the camera
    face: np.ndarray  # (N,) int 0..5: -x, +x, -y, +y, -z, +z of the primitive (a cylinder's side is 0)
    u: np.ndarray  # (N,) surface coordinates in metres
    v: np.ndarray
    cos_view: np.ndarray  # (N,) |cos| of the angle between normal and ray


def _surfaces(prims: np.ndarray, origin: np.ndarray, rays: np.ndarray, inv_norm: np.ndarray, depth: np.ndarray,
              prim: np.ndarray) -> _Surfaces:
    """Deferred pass: face, normal and texture coordinates of each hit, from its depth and primitive alone.

    Args:
        prims: (P, 10) primitive table; origin: (3,) camera centre; rays: (3, H, W) world rays; inv_norm: (N,)
            inverse ray lengths; depth: (H, W) hit depths, finite; prim: (H, W) primitive per pixel, >= 0.
    """
    d = rays.reshape(3, -1)
    point = origin[:, None] + depth.reshape(-1) * d
    # np.take: several times faster than fancy indexing for this gather.
    cx, cy, cz, hx, hy, hz, c, s, kind, sign = np.take(prims, prim.reshape(-1), axis=0).T
    rx, ry = point[0] - cx, point[1] - cy
    x, y, z = c * rx + s * ry, c * ry - s * rx, point[2] - cz  # in the primitive's frame
    ax, ay, az = np.abs(x) / hx, np.abs(y) / hy, np.abs(z) / hz
    radial = np.sqrt(x * x + y * y)
    cylinder = kind == _CYLINDER
    side = cylinder & (az * hx < radial)
    # A box face is the one whose slab the point lies on (largest |coordinate| / half extent); a cylinder is hit on
    # its side or a cap.
    on_x = ~cylinder & (ax >= ay) & (ax >= az)
    on_z = np.where(cylinder, ~side, ~on_x & (az > ay))
    on_y = ~(on_x | on_z | side)
    positive = np.where(on_x, x, np.where(on_y, y, z)) > 0
    face = np.where(side, 0, np.where(on_x, 0, np.where(on_y, 2, 4)) + positive)
    outward = np.where(positive, sign, -sign)  # sign = -1 turns the room's normals inwards
    inv_radial = sign / np.maximum(radial, 1e-9)
    nx = np.where(side, x * inv_radial, on_x * outward)
    ny = np.where(side, y * inv_radial, on_y * outward)
    normal = np.stack([c * nx - s * ny, s * nx + c * ny, on_z * outward])
    # Texture coordinates: the two in-face axes of a box face; arc length and height on a cylinder's side.
    u = np.where(side, np.arctan2(y, x) * hx, np.where(on_x, y, x))
    v = np.where(on_z, y, z)
    cos_view = np.abs(normal[0] * d[0] + normal[1] * d[1] + normal[2] * d[2]) * inv_norm
    return _Surfaces(point, normal, face, u, v, cos_view)


def _shade(albedo: np.ndarray, surf: _Surfaces, lights, ambient: float, camera_light=None) -> np.ndarray:
    """Lambertian shading: ``albedo (N, 3)`` linear RGB -> radiance (N, 3), from point lights (soft inverse-square
    falloff, ``1 / (1 + d^2 / 9)``) plus an ambient term slightly brighter on upward-facing surfaces, and an optional
    ``camera_light = (position, colour)`` whose falloff ``1 / (1 + 4 d^2)`` is inverse-square beyond half a metre."""
    nx, ny, nz = surf.normal
    light = np.empty_like(albedo)
    light[:] = (ambient * (0.85 + 0.15 * nz))[:, None]
    sources = [(position, colour, 9.0) for position, colour in lights]
    if camera_light is not None:
        sources.append((*camera_light, 0.25))
    for position, colour, radius2 in sources:
        lx, ly, lz = (float(p) - q for p, q in zip(position, surf.point))
        dist2 = lx * lx + ly * ly + lz * lz
        cos = (nx * lx + ny * ly + nz * lz) / np.sqrt(dist2)
        light += (np.maximum(cos, 0) / (1 + dist2 / radius2))[:, None] * colour.astype(np.float32)
    return albedo * light


def _sensor_depth(clean: np.ndarray, cos_view: np.ndarray, cfg: SynthRoomsConfig, rng) -> np.ndarray:
    """Kinect-like depth from the clean z-buffer ``clean (H, W)`` (inf where nothing is hit) and the cosine between
    surface normal and ray ``cos_view (H, W)``; 0 marks a hole."""
    depth = clean.copy()
    if cfg.sensor_noise:
        a, b = cfg.depth_noise
        depth += rng.standard_normal(depth.shape, dtype=np.float32) * (a + b * np.square(np.minimum(clean, 1e3)))
        depth = np.maximum(depth, 1e-3)
    if cfg.holes:
        h, w = clean.shape
        # The far side of a depth edge is shadowed from the projector.
        far = clean * (1 + _EDGE_JUMP)
        edge = np.zeros(clean.shape, bool)
        edge[:, 1:] |= clean[:, 1:] > far[:, :-1]
        edge[:, :-1] |= clean[:, :-1] > far[:, 1:]
        edge[1:] |= clean[1:] > far[:-1]
        edge[:-1] |= clean[:-1] > far[1:]
        holes = edge & (rng.random(clean.shape, dtype=np.float32) < _EDGE_HOLE_PROB)
        holes |= cos_view < _GRAZING_COS * rng.random(clean.shape, dtype=np.float32)
        holes |= rng.random(clean.shape, dtype=np.float32) < cfg.pixel_dropout
        rows, cols = np.arange(h)[:, None], np.arange(w)[None]
        for _ in range(int(rng.integers(cfg.hole_patches[0], cfg.hole_patches[1] + 1))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(0.02, 0.08, 2) * max(h, w)
            holes |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1
        depth[holes] = 0
    depth[~(depth < cfg.max_depth)] = 0  # beyond the range, and rays that hit nothing
    return depth


def render_frame(index: int, seed: int = 0, cfg: SynthRoomsConfig | None = None) -> dict[str, np.ndarray | float]:
    """Render frame ``index`` of the SynthRooms stream ``seed``.

    Args:
        index: frame number (>= 0); frames are independent, any index can be rendered alone.
        seed: stream seed (>= 0).
        cfg: generator options (defaults: :class:`SynthRoomsConfig`).

    Returns:
        A dict with ``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W) sensor depth in metres, 0 = hole;
        ``clean_depth`` float32 (H, W) exact z-depth before noise, holes and range (0 only where nothing is hit);
        ``label`` uint8 (H, W) NYU13 ids; ``instance`` int32 (H, W), 0 = stuff; ``intrinsics`` float32 (4,) fx, fy,
        cx, cy; ``camera_pose`` float32 (4, 4) camera-to-world (OpenCV camera axes, world z up, floor at z = 0);
        and floats ``camera_height`` (m), ``camera_pitch_deg``, ``camera_roll_deg``.
    """
    cfg = cfg or SynthRoomsConfig()
    if int(index) < 0 or int(seed) < 0:
        raise ValueError(f"SynthRooms index and seed must be non-negative integers, got index={index}, seed={seed}")
    scene_rng, photo_rng, sensor_rng = (np.random.default_rng([int(seed), int(index), stream]) for stream in range(3))
    scene, camera, lights = _layout(scene_rng, cfg)
    prims = np.array(scene.prims, np.float32)
    size = tuple(cfg.size)
    intrinsics = frame_intrinsics(index, seed, cfg)
    camera_rays, inv_norm = _pixel_rays(size, intrinsics)
    r = camera.rotation.tolist()  # rays = rotation @ camera rays, whose z is 1; without BLAS (see _screen_rects)
    rays = np.stack([r[i][0] * camera_rays[0] + r[i][1] * camera_rays[1] + r[i][2] for i in range(3)])
    depth, prim = _cast(scene, prims, camera, rays, intrinsics)

    # Pixels whose ray hits nothing (impossible in a closed room, but defined) get the room's row and are blanked.
    missed = prim.reshape(-1) < 0
    clean = np.where(missed, 0, depth.reshape(-1))
    index = np.maximum(prim.reshape(-1), 0)
    surf = _surfaces(prims, camera.origin.astype(np.float32), rays, inv_norm, clean.reshape(size),
                     index.reshape(size))
    face_index = index * 6 + surf.face  # into the flattened per-(primitive, face) tables
    materials = _sample_materials(photo_rng, scene.num_materials, cfg.grain_strength)
    material_index = np.take(np.array(scene.face_materials, np.int32), face_index)
    footprint = clean / (intrinsics[0] * np.maximum(surf.cos_view, 0.05))
    albedo = _albedo(materials, material_index, surf.u, surf.v, footprint, cfg.grain_size)
    headlamp = (camera.origin, np.full(3, cfg.camera_light, np.float32)) if cfg.camera_light > 0 else None
    radiance = _shade(albedo, surf, lights, photo_rng.uniform(0.15, 0.4), headlamp)
    luminance = float(np.dot(radiance.mean(0), (0.2126, 0.7152, 0.0722)))
    exposure = photo_rng.uniform(0.3, 0.5) / max(luminance, 1e-6)
    # sqrt: a cheap stand-in for the sRGB curve (gamma 2 instead of 2.2).
    rgb = np.sqrt(np.clip(radiance * exposure, 0, 1)) * 255
    # Uniform noise of the configured std: a quarter of the cost of Gaussian samples, and as good to a network.
    rgb += (photo_rng.random(rgb.shape, dtype=np.float32) - 0.5) * (math.sqrt(12) * cfg.rgb_noise)
    rgb[missed] = 0
    rgb = np.clip(rgb + 0.5, 0, 255).astype(np.uint8).reshape(*size, 3)

    label = np.take(np.array(scene.face_labels, np.uint8), face_index)
    label[missed] = 0
    instance = np.take(np.array(scene.instances, np.int32), index)
    instance[missed] = 0
    pose = np.eye(4, dtype=np.float32)
    pose[:3, :3], pose[:3, 3] = camera.rotation, camera.origin
    return {
        "rgb": rgb,
        "depth": _sensor_depth(depth, surf.cos_view.reshape(size), cfg, sensor_rng),
        "clean_depth": clean.reshape(size),
        "label": label.reshape(size),
        "instance": instance.reshape(size),
        "intrinsics": intrinsics,
        "camera_pose": pose,
        "camera_height": float(camera.origin[2]),
        "camera_pitch_deg": float(camera.pitch_deg),
        "camera_roll_deg": float(camera.roll_deg),
    }


# --------------------------------------------------------------------------------------------------------------
# Dataset, frames folder, CLI
# --------------------------------------------------------------------------------------------------------------

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

def _is_val(index: int, fraction: float) -> bool:
    # Frame 0 and then about every (1/fraction)-th frame: a frame's split never depends on how many are written,
    # so growing a folder with a larger ``num`` keeps earlier frames where they were.
    return math.floor(index * fraction) > math.floor((index - 1) * fraction)


def write_synthrooms(out: str | Path, num: int, *, seed: int = 0, cfg: SynthRoomsConfig | None = None,
                     val_fraction: float = 0.1, progress: bool = True) -> Path:
    """Render frames 0..num-1 of stream ``seed`` into a frames folder (:mod:`mask3d_vit.data.frames`).

    Resumable: frames already on disk are kept, so an interrupted run, or a later run with a larger ``num``, only
    renders what is missing. The folder must have been written with the same seed and config.

    Args:
        out: output folder (created).
        num: number of frames.
        seed: stream seed.
        cfg: generator options (defaults: :class:`SynthRoomsConfig`).
        val_fraction: share of frames listed in ``val.txt`` (frame 0, then about every 1/val_fraction-th frame);
            the rest go to ``train.txt``.
        progress: show a progress bar.

    Returns:
        The folder.
    """
    from tqdm import tqdm

    cfg = cfg or SynthRoomsConfig()
    if num < 1:
        raise ValueError(f"write_synthrooms: num must be >= 1, got {num}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"write_synthrooms: val_fraction must lie in [0, 1), got {val_fraction}")
    root = Path(out)
    source = f"SynthRooms (mask3d_vit.data.synthrooms), seed {seed}, config {json.dumps(to_dict(cfg))}"
    if (root / "meta.json").is_file():
        previous = read_meta(root).get("source")
        if previous != source:
            raise ValueError(f"{root}: already holds frames from another source ({previous!r}); "
                             f"write to a new folder, or repeat that run's seed and config to extend it")
    writer = FramesWriter(root, classes=list(NYU13), class_set=CLASS_SET, depth_scale=DEPTH_SCALE, source=source)
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for i in tqdm(range(num), desc=f"synthrooms -> {root}", unit="frame", disable=not progress):
        fid = _frame_id(seed, i)
        splits["val" if _is_val(i, val_fraction) else "train"].append(fid)
        if writer.exists(fid):
            # meta.json lists the intrinsics of every frame, kept or new (and the field of view varies per frame).
            writer.intrinsics[fid] = [float(v) for v in frame_intrinsics(i, seed, cfg)]
            continue
        f = render_frame(i, seed, cfg)
        writer.write(fid, f["rgb"], f["depth"], intrinsics=f["intrinsics"], label=f["label"], instance=f["instance"])
    writer.finish(splits)
    return root


def _synth_command(args: argparse.Namespace) -> None:
    cfg = load_config(SynthRoomsConfig, overrides=args.overrides)
    cfg = dataclasses.replace(cfg, size=args.size or cfg.size, sensor_noise=cfg.sensor_noise and not args.no_noise,
                              holes=cfg.holes and not args.no_holes)
    root = write_synthrooms(args.out, args.num, seed=args.seed, cfg=cfg, val_fraction=args.val_fraction)
    print(f"wrote {args.num} SynthRooms frames ({cfg.size[0]}x{cfg.size[1]}, seed {args.seed}) to {root}")
