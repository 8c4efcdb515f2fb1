"""``avgpool``: average-pool the grid by ``pool_size`` first, then one Linear (the cheapest)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cora.model.resamplers.base import Resampler, from_grid, square_side, to_grid


class AvgPoolResampler(Resampler):
    """``[N, rows*cols, in_dim]`` → ``[N, (rows/p)*(cols/p), out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int, pool_size: int = 2) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.proj = nn.Linear(in_dim, out_dim)

    def out_grid(self, rows: int, cols: int) -> tuple[int, int]:
        return rows // self.pool_size, cols // self.pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = square_side(x.shape[1])
        return self.proj(from_grid(F.avg_pool2d(to_grid(x, side, side), self.pool_size)))
