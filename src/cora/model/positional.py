"""Panorama positional encoding: additive sinusoids of each token's true direction.

Every token gets the longitude (yaw) and latitude (row) of its patch centre, computed from
its view's geometry (``ViewGeometry.grid_lonlat``): a perspective tile's columns are not
evenly spaced in yaw, and the overlapping columns of adjacent tiles look at (almost) the
same longitudes, so they get (almost) the same encoding. Longitude frequencies are whole
numbers of cycles per turn, so the encoding is exactly periodic at 360° (a tile at yaw 315°
spanning 270°→405° encodes 405° like 45°).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cora.processors.geometry import ViewGeometry


def _frequencies(count: int, max_freq: float, integer: bool) -> np.ndarray:
    freqs = np.geomspace(1.0, max_freq, count) if count > 1 else np.ones(1)
    return np.round(freqs) if integer else freqs


def lonlat_encoding(lon_deg: np.ndarray, lat_deg: np.ndarray, dim: int, max_freq: float = 32.0) -> np.ndarray:
    """``[..., dim]`` encoding of directions: half longitude (integer frequencies), half latitude.

    Longitude channels are ``sin(f·lon), cos(f·lon)`` with ``f`` whole numbers 1..max_freq
    (geometric spacing), latitude channels the same over ``lat`` (any frequencies: latitude
    does not wrap). Odd leftovers of ``dim`` are zero.
    """
    n_lon = dim // 4
    n_lat = (dim - 2 * n_lon) // 2
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))[..., None]
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))[..., None]
    parts = []
    if n_lon:
        f = _frequencies(n_lon, max_freq, integer=True)
        parts += [np.sin(f * lon), np.cos(f * lon)]
    if n_lat:
        f = _frequencies(n_lat, max_freq, integer=False)
        parts += [np.sin(f * lat), np.cos(f * lat)]
    out = np.concatenate(parts, axis=-1) if parts else np.zeros((*lon.shape[:-1], 0))
    if out.shape[-1] < dim:
        out = np.concatenate([out, np.zeros((*out.shape[:-1], dim - out.shape[-1]))], axis=-1)
    return out


class PanoramaPositionalEncoding(nn.Module):
    """``tokens [B, V, rows*cols, D]`` + encoding of each view's patch-centre directions."""

    def __init__(self, dim: int, max_freq: float = 32.0) -> None:
        super().__init__()
        self.dim = dim
        self.max_freq = max_freq
        self._cache: dict[tuple, torch.Tensor] = {}

    def table(self, geometries: Sequence[ViewGeometry], rows: int, cols: int) -> torch.Tensor:
        """``[V, rows*cols, D]`` float32 encoding (cached per geometry list and grid)."""
        key = (tuple(geometries), rows, cols)
        if key not in self._cache:
            views = []
            for geom in geometries:
                lon, lat = geom.grid_lonlat(rows, cols, wrap=False)
                views.append(lonlat_encoding(lon, lat, self.dim, self.max_freq).reshape(rows * cols, self.dim))
            self._cache[key] = torch.from_numpy(np.stack(views)).float()
        return self._cache[key]

    def forward(self, tokens: torch.Tensor, geometries: Sequence[ViewGeometry], rows: int, cols: int) -> torch.Tensor:
        if tokens.shape[1] != len(geometries):
            raise ValueError(f"{tokens.shape[1]} views of tokens but {len(geometries)} geometries")
        table = self.table(geometries, rows, cols).to(device=tokens.device, dtype=tokens.dtype)
        return tokens + table.unsqueeze(0)
