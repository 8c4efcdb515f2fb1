"""Stitching: which tokens of which views the language model sees, computed from geometry.

* ``stride_views`` (reference): global tokens, then per ring of tiles the first tile whole and
  every next tile without the columns that fall inside its left neighbour's field of view
  (45° stride / 90° FOV / 16 columns: 16 + 7·8 = 72 columns, 1152 + 256 = 1408 tokens).
  72 columns span 405°: the last 8 repeat the first tile across the seam.
* ``unique``: also drops that repeat (the first tile loses the columns inside the last
  tile when the ring closes): 64 columns, 1280 tokens.
* ``concat``: every token of every view (9 · 256 = 2304).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np
import torch

from cora.config.sections.models import StitchingMode
from cora.processors.geometry import ViewGeometry, wrap_deg

STITCHING_MODES: tuple[str, ...] = get_args(StitchingMode)


@dataclass(frozen=True)
class StitchPlan:
    """``segments``: (view index, kept column indices) in output order; each segment is laid
    out row-major over ``rows`` after the previous one (a ring of tiles row by row)."""

    segments: tuple[tuple[tuple[int, tuple[int, ...]], ...], ...]
    rows: int
    cols: int

    @property
    def num_tokens(self) -> int:
        return sum(self.rows * len(c) for seg in self.segments for _, c in seg)


def _overlapping_columns(tile: ViewGeometry, left: ViewGeometry, rows: int, cols: int) -> np.ndarray:
    """Columns of ``tile`` whose centre (middle row) lies inside ``left``'s horizontal field of view."""
    lon = tile.grid_lonlat(rows, cols, wrap=False)[0][rows // 2]
    edges, _ = left.lonlat(np.array([0.0, float(left.width)]), np.full(2, left.height / 2.0), wrap=False)
    rel = wrap_deg(lon - left.yaw_deg)
    lo, hi = wrap_deg(edges - left.yaw_deg)
    return (rel > lo) & (rel < hi)


def _rings(geometries: Sequence[ViewGeometry]) -> list[list[int]]:
    """Non-global views grouped by pitch, in list order."""
    rings: dict[float, list[int]] = {}
    for i, g in enumerate(geometries):
        if g.kind != "global":
            rings.setdefault(round(g.pitch_deg, 6), []).append(i)
    return list(rings.values())


def plan_stitching(geometries: Sequence[ViewGeometry], rows: int, cols: int, mode: str) -> StitchPlan:
    """The :class:`StitchPlan` of ``mode`` for views laid out as ``rows × cols`` token grids (cached)."""
    return _plan(tuple(geometries), rows, cols, mode)


@functools.lru_cache(maxsize=64)
def _plan(geometries: tuple[ViewGeometry, ...], rows: int, cols: int, mode: str) -> StitchPlan:
    if mode not in STITCHING_MODES:
        raise ValueError(f"unknown stitching mode {mode!r}; valid: {', '.join(STITCHING_MODES)}")
    every = tuple(range(cols))
    segments = [((i, every),) for i, g in enumerate(geometries) if g.kind == "global"]
    for ring in _rings(geometries):
        if mode == "concat":
            segments.append(tuple((i, every) for i in ring))
            continue
        kept = []
        for pos, i in enumerate(ring):
            left = ring[pos - 1] if pos > 0 else None
            if pos == 0 and mode == "unique" and len(ring) > 1:
                left = ring[-1]  # the ring closes at 360°: the seam's repeat goes
            drop = (
                _overlapping_columns(geometries[i], geometries[left], rows, cols)
                if left is not None
                else np.zeros(cols, dtype=bool)
            )
            kept.append((i, tuple(int(c) for c in np.flatnonzero(~drop))))
        segments.append(tuple(kept))
    return StitchPlan(tuple(segments), rows, cols)


def stitch(tokens: torch.Tensor, plan: StitchPlan) -> torch.Tensor:
    """``[B, V, rows*cols, D]`` → ``[B, plan.num_tokens, D]``."""
    b, v, _length, dim = tokens.shape
    grid = tokens.view(b, v, plan.rows, plan.cols, dim)
    parts = []
    for segment in plan.segments:
        ring = [grid[:, i][:, :, list(cols)] for i, cols in segment if cols]
        if ring:
            parts.append(torch.cat(ring, dim=2).flatten(1, 2))  # [B, rows * ring_cols, D]
    return torch.cat(parts, dim=1)


def stitched_token_count(geometries: Sequence[ViewGeometry], rows: int, cols: int, mode: str) -> int:
    return plan_stitching(geometries, rows, cols, mode).num_tokens
