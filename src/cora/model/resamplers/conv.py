"""``conv``: strided convolution over the grid (patch merging), GELU, Linear."""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler, from_grid, square_side, to_grid


class ConvResampler(Resampler):
    """``[N, rows*cols, in_dim]`` → ``[N, (rows/p)*(cols/p), out_dim]`` with a p×p, stride-p conv."""

    def __init__(self, in_dim: int, out_dim: int, pool_size: int = 2) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=pool_size, stride=pool_size)
        self.act = nn.GELU()
        self.proj = nn.Linear(out_dim, out_dim)

    def out_grid(self, rows: int, cols: int) -> tuple[int, int]:
        return rows // self.pool_size, cols // self.pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = square_side(x.shape[1])
        return self.proj(self.act(from_grid(self.conv(to_grid(x, side, side)))))
