"""A picture that explains a crop strategy: the panorama with every view's footprint, views below.

Footprints are the view borders (pixel edges) mapped to ERP pixels through the geometry,
split where they cross the ±180° seam. Each view gets one colour, used for its outline on
the panorama and for its frame and label below.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from cora.processors.geometry import ViewGeometry, erp_lonlat_to_pixel

FONT = cv2.FONT_HERSHEY_SIMPLEX


def view_colour(index: int, count: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((index / max(count, 1)) % 1.0, 0.9, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def footprint(geom: ViewGeometry, width: int, height: int, samples: int = 64) -> list[np.ndarray]:
    """The view's border in ERP pixel coordinates: polylines ``[N, 2]`` int32, split at the seam."""
    lon, lat = geom.border_lonlat(samples)
    x, y = erp_lonlat_to_pixel(lon, lat, width, height)
    x, y = np.clip(x + 0.5, 0, width - 1), np.clip(y + 0.5, 0, height - 1)
    points = np.stack([x, y], 1)
    breaks = np.flatnonzero(np.abs(np.diff(x)) > width / 2) + 1
    pieces = np.split(points, breaks)
    if len(pieces) > 1:  # the border is a loop: its last piece continues into its first
        pieces = [np.concatenate([pieces[-1], pieces[0]]), *pieces[1:-1]]
    return [p.round().astype(np.int32) for p in pieces if len(p) > 1]


def label(geom: ViewGeometry) -> str:
    if geom.kind == "global":
        return f"#{geom.index} global"
    return f"#{geom.index} yaw {geom.yaw_deg:g} pitch {geom.pitch_deg:g}"


def contact_sheet(erp: np.ndarray, views: np.ndarray, geometries: list[ViewGeometry], width: int = 1200) -> np.ndarray:
    """``erp [H, W, 3]`` uint8 + ``views [V, S, S, 3]`` uint8 → one RGB sheet ``[?, width, 3]`` uint8."""
    pano_h = width // 2
    pano = cv2.resize(erp, (width, pano_h), interpolation=cv2.INTER_AREA)
    count = len(geometries)
    for geom in geometries:
        colour = view_colour(geom.index, count)
        if geom.kind == "global":
            cv2.rectangle(pano, (1, 1), (width - 2, pano_h - 2), colour, 2)
            continue
        lines = footprint(geom, width, pano_h)
        cv2.polylines(pano, lines, isClosed=len(lines) == 1, color=colour, thickness=2, lineType=cv2.LINE_AA)
        x, y = erp_lonlat_to_pixel(
            np.array(geom.yaw_deg if geom.yaw_deg < 180 else geom.yaw_deg - 360),
            np.array(geom.pitch_deg),
            width,
            pano_h,
        )
        text = f"#{geom.index}"
        (tw, th), _ = cv2.getTextSize(text, FONT, 0.7, 2)
        x0 = int(np.clip(x - tw / 2, 2, width - tw - 2))
        y0 = int(np.clip(y + th / 2, th + 2, pano_h - 4))
        cv2.rectangle(pano, (x0 - 3, y0 - th - 3), (x0 + tw + 3, y0 + 4), (255, 255, 255), -1)
        cv2.rectangle(pano, (x0 - 3, y0 - th - 3), (x0 + tw + 3, y0 + 4), colour, 2)
        cv2.putText(pano, text, (x0, y0), FONT, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    cols = min(count, 5 if count > 8 else max(count, 1))
    cell = width // cols
    thumb = cell - 12
    rows = -(-count // cols)
    grid = np.full((rows * (cell + 22), width, 3), 255, np.uint8)
    for i, (geom, view) in enumerate(zip(geometries, views)):
        r, c = divmod(i, cols)
        x0, y0 = c * cell + 6, r * (cell + 22) + 6
        grid[y0 : y0 + thumb, x0 : x0 + thumb] = cv2.resize(view, (thumb, thumb), interpolation=cv2.INTER_AREA)
        cv2.rectangle(grid, (x0 - 3, y0 - 3), (x0 + thumb + 2, y0 + thumb + 2), view_colour(geom.index, count), 3)
        cv2.putText(grid, label(geom), (x0, y0 + thumb + 18), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([pano, grid], axis=0)
