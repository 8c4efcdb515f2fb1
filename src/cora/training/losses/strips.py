"""Overlap strips of adjacent perspective tiles, found from the views' geometry.

For each pair of neighbouring tiles (i, i+1) of the same pitch row, closing the loop from
the last tile back to the first when they overlap, the ``k`` token columns of tile i that
lie in the middle of the shared zone are paired with the same longitudes in tile i+1
(sampled by linear interpolation between its columns). Global views are never paired.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch

from cora.processors.geometry import ViewGeometry, overlap_strip_columns, wrap_deg


def default_overlap_columns(width: int) -> int:
    """25% of the grid width (the reference: 4 of 16 columns), at least one column."""
    return max(1, width // 4)


@lru_cache(maxsize=64)
def _pairs(geoms: tuple[ViewGeometry, ...], rows: int, cols: int, k: int) -> tuple[tuple[int, int, tuple, tuple], ...]:
    by_pitch: dict[float, list[int]] = {}
    for pos, g in enumerate(geoms):
        by_pitch.setdefault(round(g.pitch_deg, 6), []).append(pos)
    pairs = []
    for members in by_pitch.values():
        first = geoms[members[0]].yaw_deg
        members.sort(key=lambda p: float(wrap_deg(geoms[p].yaw_deg - first)) % 360.0)
        if len(members) < 2:
            continue
        # Closed loop: the last tile meets the first across the seam (only kept if they overlap).
        candidates = list(itertools.pairwise(members)) + ([(members[-1], members[0])] if len(members) > 2 else [])
        for a, b in candidates:
            try:
                idx_a, pos_b = overlap_strip_columns(geoms[a], geoms[b], cols, k, rows=rows)
            except ValueError:
                continue
            pairs.append((a, b, tuple(int(i) for i in idx_a), tuple(float(p) for p in pos_b)))
    return tuple(pairs)


def tile_pairs(
    tile_geometries: list[ViewGeometry], rows: int, cols: int, k: int
) -> list[tuple[int, int, tuple, tuple]]:
    """``(a, b, idx_a, pos_b)`` for every overlapping neighbour pair; positions index the tile list."""
    return list(_pairs(tuple(tile_geometries), rows, cols, k))


def _tiles_only(features: torch.Tensor, geometries: list[ViewGeometry]) -> tuple[torch.Tensor, list[ViewGeometry]]:
    if features.dim() != 5:
        raise ValueError(f"overlap features must be [B, T, H, W, D], got shape {tuple(features.shape)}")
    geoms = list(geometries)
    if len(geoms) != features.shape[1]:
        raise ValueError(f"{features.shape[1]} feature views but {len(geoms)} geometries")
    keep = [i for i, g in enumerate(geoms) if g.kind != "global"]
    if len(keep) != len(geoms):
        features = features[:, keep]
        geoms = [geoms[i] for i in keep]
    return features, geoms


def extract_strips(
    features: torch.Tensor, tile_geometries: list[ViewGeometry], k: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matched strips of every overlapping tile pair.

    ``features [B, T, H, W, D]`` → ``(left [B*P, H*k, D], right [B*P, H*k, D])`` where P is
    the number of pairs; row ``n`` of both belongs to sample ``n // P`` and pair ``n % P``,
    and token ``j`` of ``left`` shows the same place on the sphere as token ``j`` of ``right``.
    Raises ``ValueError`` when no two tiles overlap (a loss must never be an empty tensor).
    """
    features, geoms = _tiles_only(features, tile_geometries)
    b, _, h, w, d = features.shape
    k = k or default_overlap_columns(w)
    pairs = tile_pairs(geoms, h, w, k)
    if not pairs:
        raise ValueError(
            f"no overlapping tile pairs among {len(geoms)} tiles "
            f"(yaws {[g.yaw_deg for g in geoms]}): the overlap loss needs overlapping views"
        )
    lefts, rights = [], []
    for a, bb, idx_a, pos_b in pairs:
        pos = torch.tensor(pos_b, device=features.device, dtype=torch.float32)
        lo = pos.floor().long().clamp(0, w - 1)
        hi = (lo + 1).clamp(max=w - 1)
        frac = (pos - lo.float()).view(1, 1, -1, 1).to(features.dtype)
        tile_b = features[:, bb]
        right = tile_b[:, :, lo] * (1 - frac) + tile_b[:, :, hi] * frac
        left = features[:, a][:, :, list(idx_a)]
        lefts.append(left)
        rights.append(right)
    # [B, P, H, k, D] -> [B*P, H*k, D]
    left = torch.stack(lefts, 1).reshape(b * len(pairs), h * k, d)
    right = torch.stack(rights, 1).reshape(b * len(pairs), h * k, d)
    return left, right
