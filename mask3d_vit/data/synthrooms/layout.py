"""Layout: the room's shape, its furniture, wall items and clutter, the lights and the camera of one frame."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .settings import SynthRoomsConfig
from .objects import (_bed, _books_row, _books_stack, _bookshelf, _cabinet, _chair, _picture, _small_object, _sofa,
                      _standing_tv, _table, _tv, _window)
from .scene import (_BOX, CEILING, FLOOR, WALL, _box, _group_aabb, _Object, _object_aabb, _pick, _rotate, _Scene,
                    _Surface)

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
