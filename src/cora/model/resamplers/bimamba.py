"""``bimamba`` (the default): bidirectional Mamba over the token sequence of each view.

Linear in→out; ``depth`` blocks, each ``LN(x + (fwd(x) + flip(bwd(flip(x)))) / 2)``; final LN;
Linear out→out. Token count is kept.
"""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler
from cora.model.resamplers.mamba import MambaBlock


class BiMambaLayer(nn.Module):
    """``[N, L, D]`` → ``[N, L, D]``: a forward and a backward Mamba, averaged, residual, LN."""

    def __init__(self, dim: int, d_state: int, d_conv: int, expand: int, chunk_size: int) -> None:
        super().__init__()
        self.forward_mamba = MambaBlock(dim, d_state, d_conv, expand, chunk_size=chunk_size)
        self.backward_mamba = MambaBlock(dim, d_state, d_conv, expand, chunk_size=chunk_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backward = self.backward_mamba(x.flip(1)).flip(1)
        return self.norm(x + 0.5 * (self.forward_mamba(x) + backward))


class BiMambaResampler(Resampler):
    """``[N, L, in_dim]`` → ``[N, L, out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int, depth: int = 4, d_state: int = 64, d_conv: int = 4,
                 expand: int = 2, dropout: float = 0.0, chunk_size: int = 16) -> None:
        super().__init__()
        self.input = nn.Linear(in_dim, out_dim)
        self.layers = nn.ModuleList(BiMambaLayer(out_dim, d_state, d_conv, expand, chunk_size) for _ in range(depth))
        self.norm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for layer in self.layers:
            x = layer(x)
        return self.output(self.dropout(self.norm(x)))
