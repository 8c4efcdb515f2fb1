"""Crop strategies: each turns the image-processing config into a list of view geometries.

A strategy is a small function ``(cfg) -> list[ViewGeometry]``, named in the crop-strategy
table of :mod:`cora.registry` (a new one: a function here + one line there). Geometries only:
pixels are sampled later, from these, by :mod:`cora.processors.projection`. Indices are set by
:func:`cora.processors.views.plan_views`.

Ordering inside a strategy: rows top to bottom (higher pitch first), yaw increasing (to
the right) within a row, starting at yaw 0° (the ERP's centre column) for perspective
tiles and at the ERP's left edge (-180°) for anyres patches, which are pixel-aligned
sub-rectangles of the ERP like LLaVA-NeXT's grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cora.config.sections.image import ImageProcessingConfig
from cora.processors.geometry import ViewGeometry, global_view, perspective_view
from cora.registry import CROP_STRATEGIES

Strategy = Callable[[ImageProcessingConfig], list[ViewGeometry]]
# Strategies whose definition includes the global view (include_global applies to these).
WITH_GLOBAL = {"anyres", "anyres_max", "anyres_e2p"}


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name`` (an unknown name lists the valid ones)."""
    return CROP_STRATEGIES.load(name)


def closed_loop_yaws(fov_deg: float, overlap_ratio: float) -> list[float]:
    """Evenly spaced yaws around 360° whose stride is at most ``fov * (1 - overlap)``.

    FOV 90°, overlap 0.5 → stride 45° → 8 yaws 0, 45, …, 315 (the last overlaps the first
    across the seam). The stride is rounded down so the loop closes without a gap.
    """
    stride = fov_deg * (1.0 - overlap_ratio)
    count = max(1, math.ceil(360.0 / stride - 1e-9))
    return [i * 360.0 / count for i in range(count)]


def pitch_rows(pitch_min: float, pitch_max: float, fov_deg: float, overlap_ratio: float) -> list[float]:
    """Pitches from ``pitch_max`` down to ``pitch_min``, stride at most ``fov * (1 - overlap)``."""
    if pitch_max <= pitch_min:
        return [float(pitch_min)]
    stride = fov_deg * (1.0 - overlap_ratio)
    steps = max(1, math.ceil((pitch_max - pitch_min) / stride - 1e-9))
    return [pitch_max - i * (pitch_max - pitch_min) / steps for i in range(steps + 1)]


def erp_grid(rows: int, cols: int, size: int) -> list[ViewGeometry]:
    """``rows × cols`` ERP sub-rectangles covering the whole ERP, left edge first."""
    hfov, vfov = 360.0 / cols, 180.0 / rows
    return [
        ViewGeometry("crop", "erp", -180.0 + (c + 0.5) * hfov, 90.0 - (r + 0.5) * vfov, hfov, vfov, size, size)
        for r in range(rows)
        for c in range(cols)
    ]


def resize(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    return [global_view(cfg.image_size)]


def e2p(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    return [perspective_view(0.0, 0.0, cfg.fov_deg, cfg.image_size)]


def cubemap(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    """Front, right, back, left at yaw 0/90/180/270 (FOV 90°); with 6 faces also up and down."""
    faces = [perspective_view(yaw, 0.0, 90.0, cfg.image_size) for yaw in (0.0, 90.0, 180.0, 270.0)]
    if cfg.cubemap_faces == 6:
        faces += [perspective_view(0.0, 90.0, 90.0, cfg.image_size), perspective_view(0.0, -90.0, 90.0, cfg.image_size)]
    return faces


def sliding_window(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    """ERP crops ``window_deg`` wide, full height, every ``window * (1 - overlap)``, wrapping at 360°."""
    return [
        ViewGeometry("crop", "erp", yaw, 0.0, cfg.window_deg, 180.0, cfg.image_size, cfg.image_size)
        for yaw in closed_loop_yaws(cfg.window_deg, cfg.overlap_ratio)
    ]


def anyres(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    rows, cols = cfg.anyres_grid
    return erp_grid(rows, cols, cfg.image_size)


def max_grid(budget: int) -> tuple[int, int]:
    """The densest ``r × 2r`` grid (square patches in degrees on a 2:1 ERP) with ``2r² ≤ budget``.

    12 → 2×4, 18 → 3×6, 32 → 4×8; a budget below 2 gives one 1×1 patch (the whole ERP).
    """
    rows = max(1, math.isqrt(budget // 2))
    return (rows, 2 * rows) if budget >= 2 else (1, 1)


def anyres_max(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    rows, cols = max_grid(cfg.anyres_max_patches)
    return erp_grid(rows, cols, cfg.image_size)


def anyres_e2p(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    """Perspective tiles on a pitch × closed-loop-yaw grid (the global view is added by plan_views)."""
    yaws = closed_loop_yaws(cfg.fov_deg, cfg.overlap_ratio)
    pitches = pitch_rows(cfg.pitch_min_deg, cfg.pitch_max_deg, cfg.fov_deg, cfg.overlap_ratio)
    return [perspective_view(yaw, pitch, cfg.fov_deg, cfg.image_size) for pitch in pitches for yaw in yaws]
