"""Object builders, each in its object's frame; materials are drawn by the caller, independently of the class."""
from __future__ import annotations

from .scene import (BED, BOOKS, CHAIR, FURNITURE, OBJECTS, PICTURE, SOFA, TABLE, TV, WINDOW, _box, _cylinder,
                    _Object, _Part, _pick, _Shelf, _Surface)

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
