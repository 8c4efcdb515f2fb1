"""Vectorised numpy ray casting of a :class:`Scene` along any set of view directions.

``render_directions`` traces arbitrary (lon, lat) grids (an ERP, or a perspective tile
straight from :class:`~cora.processors.geometry.ViewGeometry`); ``render_erp`` traces an
equirectangular image and only tests each object against the ERP window its bounding
sphere can cover, which makes a 512×256 panorama cost a few milliseconds per object.
Every renderer also returns an object-id map (``-1`` = sky/ground) from which the ERP
bounding boxes are measured, so boxes and pixels can never disagree.
"""

from __future__ import annotations

import math

import numpy as np

from cora.data.synth.scene import CAMERA_HEIGHT, COLOURS, GROUNDS, SKIES, Scene, SynthObject
from cora.processors.geometry import erp_pixel_to_lonlat

_LIGHT = np.array([0.45, 0.8, -0.35]) / np.linalg.norm([0.45, 0.8, -0.35])
_EPS = 1e-9


def directions(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Unit ray directions ``[..., 3]`` (x right, y up, z ahead) for lon/lat in degrees."""
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    cos_lat = np.cos(lat)
    return np.stack([cos_lat * np.sin(lon), np.sin(lat), cos_lat * np.cos(lon)], axis=-1)


# -- ray / shape intersections: dirs [N, 3] -> (t [N] (inf on a miss), normals [N, 3]) -------
def _sphere(obj: SynthObject, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = obj.centre
    r = obj.radius_m
    b = d @ c
    disc = b * b - (c @ c - r * r)
    t = np.where(disc >= 0, b - np.sqrt(np.maximum(disc, 0.0)), np.inf)
    t = np.where(t > 0, t, np.inf)
    normals = (np.where(np.isfinite(t), t, 0.0)[:, None] * d - c) / r
    return t, normals


def _cube(obj: SynthObject, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Slab test in the cube's own frame (rotated about y by yaw + spin).
    theta = math.radians(obj.yaw_deg + obj.spin_deg)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    c = obj.centre
    to_local = np.array([[cos_t, 0.0, -sin_t], [0.0, 1.0, 0.0], [sin_t, 0.0, cos_t]])
    o = to_local @ (-c)
    dl = d @ to_local.T
    half = obj.radius_m
    safe = np.where(np.abs(dl) < _EPS, _EPS, dl)
    t1 = (-half - o) / safe
    t2 = (half - o) / safe
    t_near = np.minimum(t1, t2)
    t_far = np.maximum(t1, t2)
    t_enter = t_near.max(axis=1)
    t_exit = t_far.min(axis=1)
    hit = (t_enter <= t_exit) & (t_enter > 0)
    t = np.where(hit, t_enter, np.inf)
    axis = t_near.argmax(axis=1)
    n_local = np.zeros_like(dl)
    n_local[np.arange(len(dl)), axis] = -np.sign(dl[np.arange(len(dl)), axis])
    return t, n_local @ to_local  # to_local is orthonormal: its transpose maps back


def _solve_side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both roots of ``a t² + b t + c = 0`` (inf where none)."""
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    safe_a = np.where(np.abs(a) < _EPS, _EPS, a)
    ok = disc >= 0
    return (np.where(ok, (-b - root) / (2 * safe_a), np.inf), np.where(ok, (-b + root) / (2 * safe_a), np.inf))


def _nearest_valid(candidates: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per ray, the smallest ``t`` among candidates whose mask is true."""
    t = np.full(candidates[0][0].shape, np.inf)
    which = np.full(t.shape, -1)
    for i, (ti, ok) in enumerate(candidates):
        better = ok & (ti > 0) & (ti < t)
        t = np.where(better, ti, t)
        which = np.where(better, i, which)
    return t, which


def _cylinder(obj: SynthObject, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base = obj.base
    top = base[1] + obj.height_m
    ox, oz = -base[0], -base[2]
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    r = obj.radius_m
    t_side, _ = _solve_side(dx * dx + dz * dz, 2 * (ox * dx + oz * dz), np.full(len(d), ox * ox + oz * oz - r * r))
    y_side = t_side * dy
    safe_dy = np.where(np.abs(dy) < _EPS, _EPS, dy)
    t_cap = top / safe_dy
    cap_ok = (t_cap * dx + ox) ** 2 + (t_cap * dz + oz) ** 2 <= r * r
    t, which = _nearest_valid([(t_side, (y_side >= base[1]) & (y_side <= top)), (t_cap, cap_ok)])
    p = np.where(np.isfinite(t), t, 0.0)[:, None] * d - base
    side_n = np.stack([p[:, 0], np.zeros(len(d)), p[:, 2]], axis=1) / r
    normals = np.where((which == 1)[:, None], np.array([0.0, 1.0, 0.0]), side_n)
    return t, normals


def _cone(obj: SynthObject, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base = obj.base
    apex = base + np.array([0.0, obj.height_m, 0.0])
    k2 = (obj.radius_m / obj.height_m) ** 2
    q0 = -apex  # ray origin relative to the apex
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dz * dz - k2 * dy * dy
    b = 2 * (dx * q0[0] + dz * q0[2] - k2 * dy * q0[1])
    c = np.full(len(d), q0[0] ** 2 + q0[2] ** 2 - k2 * q0[1] ** 2)
    roots = _solve_side(a, b, c)

    def on_cone(t: np.ndarray) -> np.ndarray:
        qy = t * dy + q0[1]
        return (qy <= 0) & (qy >= -obj.height_m)  # the lower nappe, between apex and base

    t, _ = _nearest_valid([(roots[0], on_cone(roots[0])), (roots[1], on_cone(roots[1]))])
    q = np.where(np.isfinite(t), t, 0.0)[:, None] * d + q0
    normals = np.stack([q[:, 0], -k2 * q[:, 1], q[:, 2]], axis=1)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), _EPS)
    return t, normals


_INTERSECT = {"sphere": _sphere, "cube": _cube, "cylinder": _cylinder, "cone": _cone}


# -- background ----------------------------------------------------------------------------
def _ray_terms(d: np.ndarray) -> dict[str, np.ndarray]:
    """Scene-independent per-ray terms of the background (cached for ERP rays).

    Ground terms are kept for the rays below the horizon only (``ground_idx``);
    ``ground_pos`` maps a ray index to its position among them (-1 for sky rays).
    """
    below = d[:, 1] < -1e-4
    ground_idx = np.flatnonzero(below)
    ground_pos = np.full(len(d), -1)
    ground_pos[ground_idx] = np.arange(len(ground_idx))
    g = d[ground_idx]
    t = CAMERA_HEIGHT / -g[:, 1]
    sky_idx = np.flatnonzero(~below)
    return {
        "ground_idx": ground_idx,
        "ground_pos": ground_pos,
        "gx": t * g[:, 0],
        "gz": t * g[:, 2],
        "fade": 0.25 * np.exp(-t / 20.0),
        "fog": 1.0 - np.exp(-t / 40.0),
        "sky_idx": sky_idx,
        "sky": np.sqrt(np.clip(d[sky_idx, 1], 0.0, 1.0)),
    }


def _background(scene: Scene, terms: dict[str, np.ndarray], windows: list[np.ndarray] | None) -> np.ndarray:
    """Sky gradient above the horizon; a textured, fogged ground plane below. ``[N, 3]``."""
    horizon, zenith = (np.array(c) for c in SKIES[scene.sky])
    rgb = np.empty((len(terms["ground_pos"]), 3))
    rgb[terms["sky_idx"]] = horizon + (zenith - horizon) * terms["sky"][:, None]
    ox, oz = scene.texture_offset
    gx, gz = terms["gx"], terms["gz"]
    # A checkerboard of 1.5 m tiles gives the overlap loss real texture; it fades with distance.
    checker = (np.floor((gx + ox) / 1.5) + np.floor((gz + oz) / 1.5)) % 2
    shade = 0.8 + checker * terms["fade"]
    fog = terms["fog"][:, None]
    ground = np.array(GROUNDS[scene.ground])[None] * shade[:, None] * (1 - fog) + horizon * fog
    # Soft contact shadows under each object (only rays near it can be in its shadow).
    for i, obj in enumerate(scene.objects):
        pos = np.arange(len(gx)) if windows is None else terms["ground_pos"][windows[i]]
        pos = pos[pos >= 0]
        base = obj.base
        dist = np.hypot(gx[pos] - base[0], gz[pos] - base[2])
        ground[pos] *= (1.0 - 0.4 * np.clip(1.3 - dist / (obj.radius_m * 1.2), 0.0, 1.0))[:, None]
    rgb[terms["ground_idx"]] = ground
    return rgb


def _shade(obj: SynthObject, normals: np.ndarray) -> np.ndarray:
    lambert = np.clip(normals @ _LIGHT, 0.0, 1.0)
    return np.array(COLOURS[obj.colour])[None] * (0.5 + 0.5 * lambert)[:, None]


def _trace(
    scene: Scene, d: np.ndarray, windows: list[np.ndarray] | None = None, terms: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Colours ``[N, 3]`` in [0, 1] and object ids ``[N]`` of rays ``d [N, 3]``.

    ``windows[i]`` limits object ``i`` to the rays it can hit or shadow (indices into ``d``).
    """
    rgb = _background(scene, terms if terms is not None else _ray_terms(d), windows)
    depth = np.full(len(d), np.inf)
    ids = np.full(len(d), -1, dtype=np.int16)
    for i, obj in enumerate(scene.objects):
        idx = np.arange(len(d)) if windows is None else windows[i]
        if len(idx) == 0:
            continue
        t, normals = _INTERSECT[obj.shape](obj, d[idx])
        closer = t < depth[idx]
        hit = idx[closer]
        depth[hit] = t[closer]
        ids[hit] = i
        rgb[hit] = _shade(obj, normals[closer])
    return rgb, ids


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def render_directions(scene: Scene, lon_deg: np.ndarray, lat_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render rays at (lon, lat) ``[H, W]``: image ``[H, W, 3]`` uint8 and ids ``[H, W]`` int16."""
    shape = np.shape(lon_deg)
    rgb, ids = _trace(scene, directions(lon_deg, lat_deg).reshape(-1, 3))
    return _to_uint8(rgb).reshape(*shape, 3), ids.reshape(shape)


def _erp_window(obj: SynthObject, width: int, height: int) -> np.ndarray:
    """Flat indices of the ERP pixels whose rays may hit ``obj`` (from its bounding sphere)."""
    c = obj.centre
    # The bounding sphere of the object and of its contact shadow (1.56 r on the ground).
    reach = math.sqrt((obj.radius_m * 1.6) ** 2 + (obj.height_m / 2.0) ** 2)
    dist = float(np.linalg.norm(c))
    ang = math.degrees(math.asin(min(1.0, reach / dist))) + 2.0 * 360.0 / width
    lat_c = math.degrees(math.asin(c[1] / dist))
    lat_lo, lat_hi = max(-90.0, lat_c - ang), min(90.0, lat_c + ang)
    rows = np.arange(math.floor((0.5 - lat_hi / 180.0) * height), math.ceil((0.5 - lat_lo / 180.0) * height))
    rows = rows[(rows >= 0) & (rows < height)]
    max_abs_lat = max(abs(lat_lo), abs(lat_hi))
    if max_abs_lat >= 89.0:
        cols = np.arange(width)
    else:
        half = min(180.0, ang / math.cos(math.radians(max_abs_lat)))
        lon_c = math.degrees(math.atan2(c[0], c[2]))
        x0 = math.floor((0.5 + (lon_c - half) / 360.0) * width)
        x1 = math.ceil((0.5 + (lon_c + half) / 360.0) * width)
        cols = np.unique(np.arange(x0, x1 + 1) % width)  # wraps across the seam
    return (rows[:, None] * width + cols[None, :]).ravel()


_ERP_RAYS: dict[tuple[int, int], tuple[np.ndarray, dict[str, np.ndarray]]] = {}


def erp_rays(width: int, height: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Ray directions of every ERP pixel centre ``[H*W, 3]`` and their background terms
    (cached per size, read-only)."""
    key = (width, height)
    if key not in _ERP_RAYS:
        xs, ys = np.meshgrid(np.arange(width), np.arange(height))
        lon, lat = erp_pixel_to_lonlat(xs, ys, width, height)
        rays = directions(lon, lat).reshape(-1, 3)
        terms = _ray_terms(rays)
        for array in (rays, *terms.values()):
            array.setflags(write=False)
        _ERP_RAYS[key] = (rays, terms)
    return _ERP_RAYS[key]


def render_erp(scene: Scene, width: int, height: int, windowed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ERP panorama ``[H, W, 3]`` uint8 and its object-id map ``[H, W]`` int16."""
    d, terms = erp_rays(width, height)
    windows = [_erp_window(o, width, height) for o in scene.objects] if windowed else None
    rgb, ids = _trace(scene, d, windows, terms)
    return _to_uint8(rgb).reshape(height, width, 3), ids.reshape(height, width)


def erp_bbox(ids: np.ndarray, index: int) -> list[int] | None:
    """Pixel box ``[x1, y1, x2, y2]`` (x2, y2 exclusive) of object ``index`` in an id map.

    An object across the ±180° seam gets ``x1 > x2``: it covers ``[x1, W)`` and ``[0, x2)``.
    ``None`` when the object has no visible pixel.
    """
    mask = ids == index
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = mask.any(axis=0)
    width = len(cols)
    if not (cols[0] and cols[-1]):
        xs = np.flatnonzero(cols)
        return [int(xs[0]), int(rows[0]), int(xs[-1]) + 1, int(rows[-1]) + 1]
    # Seam: the box is the complement of the longest run of empty columns.
    empty = ~cols
    best_len, best_start, run_start = 0, 0, None
    for x in range(width + 1):
        if x < width and empty[x]:
            run_start = x if run_start is None else run_start
        elif run_start is not None:
            if x - run_start > best_len:
                best_len, best_start = x - run_start, run_start
            run_start = None
    if best_len == 0:
        return [0, int(rows[0]), width, int(rows[-1]) + 1]
    return [best_start + best_len, int(rows[0]), best_start, int(rows[-1]) + 1]
