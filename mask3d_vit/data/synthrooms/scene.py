"""Scene description: primitives grouped into objects, placed in the room; the NYU13 ids objects are labelled with."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from ..classes import NYU13

_LABEL = {name: i for i, name in enumerate(NYU13)}
BED, BOOKS, CEILING, CHAIR, FLOOR, FURNITURE, OBJECTS, PICTURE, SOFA, TABLE, TV, WALL, WINDOW = (
    _LABEL[n] for n in ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
                        "table", "tv", "wall", "window"))
_STUFF = (WALL, FLOOR, CEILING)


_BOX, _CYLINDER = 0, 1


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
