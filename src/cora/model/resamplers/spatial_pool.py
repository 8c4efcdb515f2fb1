"""``spatial_pool``: a two-layer MLP per token, then average pooling of the grid by ``pool_size``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cora.model.resamplers.base import Resampler, from_grid, square_side, to_grid


class SpatialPoolResampler(Resampler):
    """``[N, rows*cols, in_dim]`` → ``[N, (rows/p)*(cols/p), out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int, pool_size: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(out_dim, out_dim)
        )

    def out_grid(self, rows: int, cols: int) -> tuple[int, int]:
        return rows // self.pool_size, cols // self.pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = square_side(x.shape[1])
        grid = to_grid(self.mlp(x), side, side)
        return from_grid(F.avg_pool2d(grid, self.pool_size))
