"""``mlp``: Linear in→hidden, LN, GELU, Linear hidden→hidden, LN, GELU, Linear hidden→out."""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler


class MLPResampler(Resampler):
    """``[N, L, in_dim]`` → ``[N, L, out_dim]``, token-wise."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 1536, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
