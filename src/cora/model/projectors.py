"""Projectors after the resampler: VICReg (stage 1 overlap features), Panorama (stages 2-3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cora.model.positional import PanoramaPositionalEncoding
from cora.model.stitching import plan_stitching, stitch
from cora.processors.geometry import ViewGeometry


class VICRegProjector(nn.Module):
    """``[..., in_dim]`` → ``[..., out_dim]``: Linear, LN, GELU, Dropout, Linear.

    Dropout 0 for VICReg; 0.1 for contrastive losses, where two dropout masks of the same
    features make the positive pair.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 1024, out_dim: int = 1024, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PanoramaProjector(nn.Module):
    """``[B, V, rows*cols, latent]`` → ``[B, N_vision, lm_hidden]``: positions, Linear, stitch."""

    def __init__(
        self,
        latent_dim: int,
        lm_hidden: int,
        stitching: str = "stride_views",
        positional_encoding: str = "sinusoidal",
        max_freq: float = 32.0,
    ) -> None:
        super().__init__()
        self.stitching = stitching
        sinusoidal = positional_encoding == "sinusoidal"
        self.positions = PanoramaPositionalEncoding(latent_dim, max_freq) if sinusoidal else None
        self.linear = nn.Linear(latent_dim, lm_hidden)

    def forward(self, tokens: torch.Tensor, geometries: Sequence[ViewGeometry], rows: int, cols: int) -> torch.Tensor:
        if self.positions is not None:
            tokens = self.positions(tokens, geometries, rows, cols)
        return stitch(self.linear(tokens), plan_stitching(geometries, rows, cols, self.stitching))
