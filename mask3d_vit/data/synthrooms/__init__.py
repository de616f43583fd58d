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

Modules: :mod:`.settings` (the config, camera), :mod:`.scene` (primitives, objects, the scene table),
:mod:`.objects` (object builders), :mod:`.layout` (room, furniture, lights, camera), :mod:`.materials` (patterns and
textures), :mod:`.render` (ray casting, shading, sensor model), :mod:`.dataset` (the on-the-fly dataset and its data
source format) and :mod:`.writer` (frames folders).
"""
from __future__ import annotations

from .settings import SynthRoomsConfig, frame_intrinsics, kinect_intrinsics
from .dataset import SynthRooms, SynthRoomsSource
from .layout import _layout  # noqa: F401  (the tests of the layout and textures import these from the package)
from .materials import _albedo  # noqa: F401
from .render import render_frame
from .writer import write_synthrooms

__all__ = ["SynthRoomsConfig", "SynthRooms", "SynthRoomsSource", "render_frame", "write_synthrooms",
           "kinect_intrinsics", "frame_intrinsics"]
