"""``masked_drop``: an MLP projection that, while training, masks a random ``drop_ratio`` of tokens.

Masked tokens are replaced by a learned mask token instead of being removed, so the token
grid (and with it stitching, positions and the overlap loss) keeps its shape; at eval time
nothing is masked.
"""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler


class MaskedDropResampler(Resampler):
    """``[N, L, in_dim]`` → ``[N, L, out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int, drop_ratio: float = 0.25, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_ratio < 1.0:
            raise ValueError(f"masked_drop: drop_ratio must be in [0, 1), got {drop_ratio}")
        self.drop_ratio = drop_ratio
        self.proj = nn.Sequential(
            nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(out_dim, out_dim)
        )
        self.mask_token = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.proj(x)
        if self.training and self.drop_ratio > 0:
            masked = torch.rand(out.shape[:2], device=out.device) < self.drop_ratio
            out = torch.where(masked.unsqueeze(-1), self.mask_token.to(out.dtype), out)
        return out
