"""Overlap strips of adjacent perspective tiles, found from the views' geometry.

For each pair of neighbouring tiles (i, i+1) of the same pitch row, closing the loop from
the last tile back to the first when they overlap, ``k`` tokens per row of tile i in the middle
of the shared zone are paired with what tile i+1 sees in the same directions. Global views are
never paired. Two pairings (``loss.pairing``):

- ``columns``: the ``k`` columns of tile i nearest the middle of the overlap on its middle row,
  paired with the same longitudes in tile i+1 on the *same row index* (linear interpolation
  between columns). Exact in longitude on the middle row only: a perspective tile's rows bend, so
  the other rows are off by a few degrees (more when the tiles are pitched).
- ``exact``: every chosen token's true direction is projected into tile i+1's token grid and
  sampled there by bilinear interpolation over rows and columns; the chosen tokens are the
  ``rows × k`` (as many as ``columns`` takes) that tile i+1 sees whose angles to the two optical
  axes are the most equal (the middle of the overlap). :func:`pairing_error` measures both.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch

from cora.config.sections.training import Pairing
from cora.processors.geometry import ViewGeometry, overlap_strip_columns, wrap_deg


def default_overlap_columns(width: int) -> int:
    """25% of the grid width (the reference: 4 of 16 columns), at least one column."""
    return max(1, width // 4)


def _neighbours(geoms: tuple[ViewGeometry, ...]) -> list[tuple[int, int]]:
    """Candidate (left, right) tile pairs: yaw-adjacent in each pitch row, the loop closed across the seam."""
    by_pitch: dict[float, list[int]] = {}
    for pos, g in enumerate(geoms):
        by_pitch.setdefault(round(g.pitch_deg, 6), []).append(pos)
    out: list[tuple[int, int]] = []
    for members in by_pitch.values():
        first = geoms[members[0]].yaw_deg
        members.sort(key=lambda p: float(wrap_deg(geoms[p].yaw_deg - first)) % 360.0)
        if len(members) < 2:
            continue
        out += list(itertools.pairwise(members)) + ([(members[-1], members[0])] if len(members) > 2 else [])
    return out


def _unit(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], axis=-1)


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), (u * v).sum(-1)))


def exact_strip(a: ViewGeometry, b: ViewGeometry, rows: int, cols: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(flat_idx_a [rows*k] int, pos_b [rows*k, 2] (row, col) float)``: the ``rows*k`` tokens of ``a`` in the
    middle of the overlap (as many as the ``columns`` pairing takes) and the exact fractional grid position
    of their directions in ``b``.

    Chosen among the tokens ``b`` sees inside its grid, those whose angles to the two optical axes are the
    most equal; with pitched tiles the rows near a pole may contribute fewer than ``k`` tokens, and the rows
    nearer the horizon more. Raises ``ValueError`` when fewer than ``rows*k`` tokens are shared.
    """
    lon, lat = a.grid_lonlat(rows, cols)
    row_b, col_b, visible = b.grid_position(lon, lat, rows, cols)
    inside = visible & (row_b >= 0) & (row_b <= rows - 1) & (col_b >= 0) & (col_b <= cols - 1)
    dirs = _unit(lon, lat)
    balance = np.abs(
        _angle_deg(dirs, _unit(np.array(a.yaw_deg), np.array(a.pitch_deg)))
        - _angle_deg(dirs, _unit(np.array(b.yaw_deg), np.array(b.pitch_deg)))
    )
    candidates = np.flatnonzero(inside.reshape(-1))
    if len(candidates) < rows * k:
        raise ValueError(f"views {a.index} and {b.index} share {len(candidates)} tokens, {rows * k} asked")
    flat = np.sort(candidates[np.argsort(balance.reshape(-1)[candidates], kind="stable")[: rows * k]])
    pos = np.stack([row_b.reshape(-1)[flat], col_b.reshape(-1)[flat]], axis=-1)
    return flat.astype(np.int64), pos


@lru_cache(maxsize=64)
def _exact_pairs(geoms: tuple[ViewGeometry, ...], rows: int, cols: int, k: int) -> tuple[tuple, ...]:
    pairs = []
    for a, b in _neighbours(geoms):
        try:
            flat, pos = exact_strip(geoms[a], geoms[b], rows, cols, k)
        except ValueError:
            continue
        pairs.append((a, b, tuple(int(i) for i in flat), tuple(map(tuple, pos.tolist()))))
    return tuple(pairs)


@lru_cache(maxsize=64)
def _pairs(geoms: tuple[ViewGeometry, ...], rows: int, cols: int, k: int) -> tuple[tuple[int, int, tuple, tuple], ...]:
    pairs = []
    for a, b in _neighbours(geoms):  # the closing pair across the seam is kept only if the tiles overlap
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


def _exact_strips(features: torch.Tensor, pairs: tuple[tuple, ...], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``features [B, T, H, W, D]`` → ``(left, right) [B*P, H*k, D]`` for exact pairs (bilinear in 2-D)."""
    b, _, h, w, d = features.shape
    flat = features.reshape(b, features.shape[1], h * w, d)
    lefts, rights = [], []
    for a, bb, idx_a, pos_b in pairs:
        pos = torch.tensor(pos_b, device=features.device, dtype=torch.float32)  # [h*k, 2] (row, col)
        r0 = pos[:, 0].floor().long().clamp(0, h - 1)
        c0 = pos[:, 1].floor().long().clamp(0, w - 1)
        r1, c1 = (r0 + 1).clamp(max=h - 1), (c0 + 1).clamp(max=w - 1)
        fr = (pos[:, 0] - r0.float()).view(1, -1, 1).to(features.dtype)
        fc = (pos[:, 1] - c0.float()).view(1, -1, 1).to(features.dtype)
        tile_b = flat[:, bb]

        def at(r: torch.Tensor, c: torch.Tensor, tile: torch.Tensor = tile_b) -> torch.Tensor:
            return tile[:, r * w + c]

        top = at(r0, c0) * (1 - fc) + at(r0, c1) * fc
        bottom = at(r1, c0) * (1 - fc) + at(r1, c1) * fc
        rights.append(top * (1 - fr) + bottom * fr)
        lefts.append(flat[:, a][:, list(idx_a)])
    left = torch.stack(lefts, 1).reshape(b * len(pairs), h * k, d)
    right = torch.stack(rights, 1).reshape(b * len(pairs), h * k, d)
    return left, right


def extract_strips(
    features: torch.Tensor, tile_geometries: list[ViewGeometry], k: int | None = None, pairing: Pairing = "columns"
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
    pairs = _exact_pairs(tuple(geoms), h, w, k) if pairing == "exact" else tile_pairs(geoms, h, w, k)
    if not pairs:
        raise ValueError(
            f"no overlapping tile pairs among {len(geoms)} tiles "
            f"(yaws {[g.yaw_deg for g in geoms]}): the overlap loss needs overlapping views"
        )
    if pairing == "exact":
        return _exact_strips(features, pairs, k)
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


def pairing_error(
    tile_geometries: list[ViewGeometry], rows: int, cols: int, k: int | None = None, pairing: Pairing = "columns"
) -> dict[str, float]:
    """Angle (degrees) between each paired token's direction and the direction its twin is sampled at.

    The twin's direction is that of its fractional grid position in the neighbour tile (what bilinear
    sampling reads there). ``{"mean_deg", "max_deg", "pairs"}`` over every token of every pair.
    """
    geoms = [g for g in tile_geometries if g.kind != "global"]
    k = k or default_overlap_columns(cols)
    errors = []
    if pairing == "exact":
        entries = [
            (a, b, np.asarray(idx), np.asarray(pos)) for a, b, idx, pos in _exact_pairs(tuple(geoms), rows, cols, k)
        ]
    else:
        entries = []
        for a, b, idx_cols, pos_cols in tile_pairs(geoms, rows, cols, k):
            idx = np.array([r * cols + c for r in range(rows) for c in idx_cols])
            pos = np.array([(r, p) for r in range(rows) for p in pos_cols], dtype=np.float64)
            entries.append((a, b, idx, pos))
    for a, b, idx, pos in entries:
        ga, gb = geoms[a], geoms[b]
        lon_a, lat_a = ga.grid_lonlat(rows, cols)
        u = (pos[:, 1] + 0.5) * gb.width / cols
        v = (pos[:, 0] + 0.5) * gb.height / rows
        lon_b, lat_b = gb.lonlat(u, v)
        errors.append(_angle_deg(_unit(lon_a.reshape(-1)[idx], lat_a.reshape(-1)[idx]), _unit(lon_b, lat_b)))
    if not errors:
        raise ValueError(f"no overlapping tile pairs among {len(geoms)} tiles")
    all_errors = np.concatenate(errors)
    return {"mean_deg": float(all_errors.mean()), "max_deg": float(all_errors.max()), "pairs": len(entries)}
