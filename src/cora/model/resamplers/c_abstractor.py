"""``c_abstractor`` (Honeybee): convolutional blocks on the 2-D token grid, MLP readout."""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler, from_grid, square_side, to_grid


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of ``[N, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, max(1, dim // reduction), 1)
        self.fc2 = nn.Conv2d(max(1, dim // reduction), dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)


class SpatialBlock(nn.Module):
    """``[N, C, H, W]``: depthwise 7×7, LN2d, 1×1 C→4C, SiLU, SE, 1×1 4C→C, residual."""

    def __init__(self, dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        hidden = dim * mlp_ratio
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pw1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.SiLU()
        self.se = SqueezeExcite(hidden)
        self.pw2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.se(self.act(self.pw1(self.norm(self.dwconv(x))))))


class CAbstractor(Resampler):
    """``[N, rows*cols, in_dim]`` → ``[N, rows'*cols', out_dim]`` (``'`` = ÷ pool_size when pooling)."""

    def __init__(
        self, in_dim: int, out_dim: int, depth: int = 3, pool_size: int = 2, c_abstractor_pool: bool = False
    ) -> None:
        super().__init__()
        self.pool_size = pool_size if c_abstractor_pool else 1
        self.input = nn.Linear(in_dim, out_dim)
        self.stage1 = nn.Sequential(*(SpatialBlock(out_dim) for _ in range(depth)))
        self.pool = nn.AvgPool2d(self.pool_size) if self.pool_size > 1 else nn.Identity()
        self.stage2 = nn.Sequential(*(SpatialBlock(out_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(out_dim)
        self.readout = nn.Sequential(nn.Linear(out_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def out_grid(self, rows: int, cols: int) -> tuple[int, int]:
        return rows // self.pool_size, cols // self.pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = square_side(x.shape[1])
        grid = to_grid(self.input(x), side, side)
        grid = self.stage2(self.pool(self.stage1(grid)))
        return self.readout(self.norm(from_grid(grid)))
