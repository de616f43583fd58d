"""Ray casting, shading and the sensor model: one frame of the stream as numpy arrays (:func:`render_frame`).

Pixel attributes are flat over N = H * W pixels."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .settings import SynthRoomsConfig, frame_intrinsics
from .layout import _Camera, _layout
from .materials import _albedo, _sample_materials
from .scene import _BOX, _CYLINDER, _Scene

# Sensor model constants (Kinect-like): a neighbour at least this much farther (relative) is a depth edge, whose
# far side the projector shadows; surfaces seen at a grazing angle return no depth.
_EDGE_JUMP = 0.05
_EDGE_HOLE_PROB = 0.75
_GRAZING_COS = 0.12


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
