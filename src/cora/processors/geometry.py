"""View geometry: which direction on the sphere each pixel of a view looks at.

Convention (used everywhere in CORA):

* **Longitude / yaw** in degrees. Yaw 0° looks at the **centre column** of the ERP image;
  yaw grows to the **right** (increasing ERP x); the ERP's left edge is -180°, its right
  edge +180° (the seam). On ``labelled-cube-1024x512.png`` yaw 0° shows the red "+Z" face
  in the image centre, 90° green "+X", 180° blue "-Z", 270° yellow "-X" (checked by
  tests/test_views_projection.py).
* **Latitude / pitch** in degrees, +90° straight up (ERP top row), -90° down.
* **ERP pixels**: pixel ``(x, y)`` covers ``[x, x+1) × [y, y+1)``, its centre is at
  ``x + 0.5``: ``lon = ((x + 0.5) / W - 0.5) * 360``, ``lat = (0.5 - (y + 0.5) / H) * 180``.
  Same ERP convention and yaw/pitch signs as py360convert (``u_deg`` positive to the right,
  ``v_deg`` up).
* **Perspective views**: a pinhole camera at the sphere centre looking at (yaw, pitch),
  no roll, square pixels; ``hfov_deg`` spans the view's full width (pixel edges).
  py360convert's ``e2p(fov)`` instead puts the first/last pixel *centres* on ±fov/2: it
  equals our view of ``fov'`` with ``tan(fov'/2) = tan(fov/2)·S/(S-1)`` (tests use this).

A view's geometry answers "which (lon, lat) does view pixel (u, v) show", for any
continuous (u, v): the projection samples with it, the positional encoding gives each
token its true longitude with it, the overlap loss finds shared strips with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

ViewKind = Literal["global", "tile", "crop"]
Projection = Literal["erp", "perspective"]


def wrap_deg(angle: np.ndarray | float) -> np.ndarray:
    """Wrap degrees into [-180, 180)."""
    return (np.asarray(angle, dtype=np.float64) + 180.0) % 360.0 - 180.0


def erp_lonlat_to_pixel(lon: np.ndarray, lat: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous ERP pixel coordinates (x, y) of (lon, lat) in degrees; pixel centres at +0.5.

    ``x`` is not wrapped: callers sampling across the seam wrap it (``x % width``).
    """
    x = (np.asarray(lon) / 360.0 + 0.5) * width - 0.5
    y = (0.5 - np.asarray(lat) / 180.0) * height - 0.5
    return x, y


def erp_pixel_to_lonlat(x: np.ndarray, y: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`erp_lonlat_to_pixel` (lon wrapped into [-180, 180))."""
    lon = ((np.asarray(x) + 0.5) / width - 0.5) * 360.0
    lat = (0.5 - (np.asarray(y) + 0.5) / height) * 180.0
    return wrap_deg(lon), lat


@dataclass(frozen=True)
class ViewGeometry:
    """Where one view looks.

    ``projection == "erp"``: an axis-aligned lon/lat rectangle of the ERP (the global view
    is the whole sphere: yaw 0, pitch 0, 360° × 180°; crops are sub-rectangles).
    ``projection == "perspective"``: a pinhole camera (tiles, cube faces).
    """

    kind: ViewKind
    projection: Projection
    yaw_deg: float
    pitch_deg: float
    hfov_deg: float
    vfov_deg: float
    width: int
    height: int
    index: int = 0

    # -- per-pixel directions -------------------------------------------------------
    def lonlat(self, u: np.ndarray, v: np.ndarray, wrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) in degrees of continuous view coordinates ``u`` (0..width), ``v`` (0..height).

        With ``wrap=False`` longitudes are continuous around the view centre (``yaw ± 180``),
        so a tile at yaw 315° spans 270°..360° instead of jumping at the seam.
        """
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        if self.projection == "erp":
            lon = self.yaw_deg + (u / self.width - 0.5) * self.hfov_deg
            lat = self.pitch_deg + (0.5 - v / self.height) * self.vfov_deg
        else:
            lon, lat = self._perspective_lonlat(u, v)
        return (wrap_deg(lon) if wrap else lon), lat

    def _perspective_lonlat(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        focal = (self.width / 2.0) / np.tan(np.radians(self.hfov_deg) / 2.0)
        x = (u - self.width / 2.0) / focal  # right
        y = (self.height / 2.0 - v) / focal  # up
        z = np.ones_like(x)  # forward
        pitch = np.radians(self.pitch_deg)
        # Pitch: rotate about the camera's x axis (positive looks up).
        y1 = y * np.cos(pitch) + z * np.sin(pitch)
        z1 = -y * np.sin(pitch) + z * np.cos(pitch)
        lon_local = np.degrees(np.arctan2(x, z1))
        lat = np.degrees(np.arctan2(y1, np.hypot(x, z1)))
        # Yaw is a rotation about the vertical axis: it only shifts longitude.
        return self.yaw_deg + lon_local, lat

    def view_coords(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The inverse of :meth:`lonlat`: continuous view coordinates ``(u, v)`` of directions (degrees),
        and whether the view can see them (in front of a perspective camera; any direction for ERP).

        ``u``/``v`` may fall outside ``0..width``/``0..height`` for directions beside the view.
        """
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if self.projection == "erp":
            u = (wrap_deg(lon - self.yaw_deg) / self.hfov_deg + 0.5) * self.width
            v = (0.5 - (lat - self.pitch_deg) / self.vfov_deg) * self.height
            return u, v, np.ones(np.broadcast(u, v).shape, dtype=bool)
        local, phi, pitch = np.radians(lon - self.yaw_deg), np.radians(lat), np.radians(self.pitch_deg)
        # World direction (x right, y up, z forward after the yaw), then undo the pitch rotation.
        x, y, z = np.cos(phi) * np.sin(local), np.sin(phi), np.cos(phi) * np.cos(local)
        y_cam = y * np.cos(pitch) - z * np.sin(pitch)
        z_cam = y * np.sin(pitch) + z * np.cos(pitch)
        visible = z_cam > 1e-9
        focal = (self.width / 2.0) / np.tan(np.radians(self.hfov_deg) / 2.0)
        safe = np.where(visible, z_cam, 1.0)
        return self.width / 2.0 + focal * x / safe, self.height / 2.0 - focal * y_cam / safe, visible

    def grid_position(self, lon: np.ndarray, lat: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, ...]:
        """Fractional ``(row, col)`` of directions in a ``rows × cols`` grid laid over the view (0 = centre of
        the first cell, as :meth:`grid_lonlat` places them) and whether the view sees them."""
        u, v, visible = self.view_coords(lon, lat)
        return v * rows / self.height - 0.5, u * cols / self.width - 0.5, visible

    def pixel_lonlat(self, wrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) of every pixel centre, arrays of shape ``[height, width]``."""
        return self.grid_lonlat(self.height, self.width, wrap=wrap)

    def grid_lonlat(self, rows: int, cols: int, wrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) of the centres of a ``rows × cols`` grid laid over the view (e.g. ViT patches).

        Shapes ``[rows, cols]``. A perspective tile's columns are not evenly spaced in
        longitude; this gives the true direction of each cell centre.
        """
        u = (np.arange(cols) + 0.5) * (self.width / cols)
        v = (np.arange(rows) + 0.5) * (self.height / rows)
        uu, vv = np.meshgrid(u, v)
        return self.lonlat(uu, vv, wrap=wrap)

    def border_lonlat(self, per_edge: int, endpoint: bool = True, wrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) in degrees along the view's border, ``per_edge`` points per edge, top edge first then
        clockwise (a perspective tile's edges curve on the sphere). ``endpoint=False``: each corner once."""
        t = np.linspace(0.0, 1.0, per_edge, endpoint=endpoint)
        w, h = self.width, self.height
        u = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
        v = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
        return self.lonlat(u, v, wrap=wrap)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ViewGeometry:
        return cls(**data)


def global_view(size: int, index: int = 0) -> ViewGeometry:
    """The whole ERP resized to ``size × size``."""
    return ViewGeometry("global", "erp", 0.0, 0.0, 360.0, 180.0, size, size, index)


def perspective_view(
    yaw_deg: float, pitch_deg: float, fov_deg: float, size: int, index: int = 0, kind: ViewKind = "tile"
) -> ViewGeometry:
    """A square pinhole view (``fov_deg`` both ways)."""
    return ViewGeometry(
        kind, "perspective", float(yaw_deg), float(pitch_deg), float(fov_deg), float(fov_deg), size, size, index
    )


def _relative_lon(lon: np.ndarray, centre: float) -> np.ndarray:
    """Longitudes relative to ``centre``, in [-180, 180): continuous across the seam."""
    return wrap_deg(np.asarray(lon) - centre)


def overlap_strip_columns(
    a: ViewGeometry, b: ViewGeometry, cols: int, k: int, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` token columns of view ``a`` and where the same longitudes fall in view ``b``.

    ``a`` and ``b`` are neighbours (``b`` to the right of ``a``). The chosen columns of ``a``
    are the ``k`` whose centre longitude (on the view's middle row) is nearest the middle of
    the overlap zone, where both views sample the sphere at the same resolution. Returns
    ``(idx_a [k] int, pos_b [k] float)``: ``pos_b`` is a fractional column index of ``b``
    (0 = centre of its first column) to be sampled by linear interpolation.

    Raises ``ValueError`` when the views do not overlap.
    """
    rows = rows or cols
    mid = rows // 2
    lon_a = a.grid_lonlat(rows, cols)[0][mid]
    lon_b = b.grid_lonlat(rows, cols)[0][mid]
    # Everything relative to a's centre, so the seam never breaks monotonicity.
    rel_a = _relative_lon(lon_a, a.yaw_deg)
    rel_b = _relative_lon(lon_b, a.yaw_deg)
    lo, hi = max(rel_a[0], rel_b[0]), min(rel_a[-1], rel_b[-1])
    if lo >= hi:
        raise ValueError(f"views {a.index} (yaw {a.yaw_deg}) and {b.index} (yaw {b.yaw_deg}) do not overlap")
    centre = 0.5 * (lo + hi)
    inside = np.flatnonzero((rel_a >= lo) & (rel_a <= hi))
    if len(inside) < k:
        raise ValueError(f"views {a.index} and {b.index} share only {len(inside)} token columns, k={k} asked")
    chosen = inside[np.argsort(np.abs(rel_a[inside] - centre), kind="stable")[:k]]
    idx_a = np.sort(chosen)
    pos_b = np.interp(rel_a[idx_a], rel_b, np.arange(cols, dtype=np.float64))
    return idx_a, pos_b
