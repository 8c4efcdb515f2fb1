"""``bimamba`` (the default): bidirectional Mamba over the token sequence of each view.

Linear in→out; ``depth`` blocks, each ``LN(x + (fwd(x) + flip(bwd(flip(x)))) / 2)``; final LN;
Linear out→out. Token count is kept. ``direction_merge="linear"`` merges the two directions
with a learned Linear(2·D → D) instead of the mean (the reference design averages them; the Linear
variant is what brings the reference size from 57.9M to ~66M, see the README's "Model" section).
"""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler
from cora.model.resamplers.mamba import MambaBlock


class BiMambaLayer(nn.Module):
    """``[N, L, D]`` → ``[N, L, D]``: a forward and a backward Mamba, averaged, residual, LN."""

    def __init__(
        self, dim: int, d_state: int, d_conv: int, expand: int, chunk_size: int, direction_merge: str = "mean"
    ) -> None:
        super().__init__()
        if direction_merge not in ("mean", "linear"):
            raise ValueError(f"bimamba: direction_merge must be 'mean' or 'linear', got {direction_merge!r}")
        self.forward_mamba = MambaBlock(dim, d_state, d_conv, expand, chunk_size=chunk_size)
        self.backward_mamba = MambaBlock(dim, d_state, d_conv, expand, chunk_size=chunk_size)
        self.merge = nn.Linear(2 * dim, dim) if direction_merge == "linear" else None
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forward = self.forward_mamba(x)
        backward = self.backward_mamba(x.flip(1)).flip(1)
        merged = 0.5 * (forward + backward) if self.merge is None else self.merge(torch.cat([forward, backward], -1))
        return self.norm(x + merged)


class BiMambaResampler(Resampler):
    """``[N, L, in_dim]`` → ``[N, L, out_dim]``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int = 4,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        dropout: float = 0.0,
        chunk_size: int = 16,
        direction_merge: str = "mean",
    ) -> None:
        super().__init__()
        self.input = nn.Linear(in_dim, out_dim)
        self.layers = nn.ModuleList(
            BiMambaLayer(out_dim, d_state, d_conv, expand, chunk_size, direction_merge) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for layer in self.layers:
            x = layer(x)
        return self.output(self.dropout(self.norm(x)))
