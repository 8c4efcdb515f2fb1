"""``perceiver`` (Flamingo's Perceiver Resampler): learned latents cross-attend to the tokens."""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler, square_side


class PerceiverLayer(nn.Module):
    """Latents ``[N, Q, D]`` attend to ``[tokens; latents]``, then a feed-forward; pre-LN, residual."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, latents: torch.Tensor, media: torch.Tensor) -> torch.Tensor:
        q = self.norm_latents(latents)
        kv = torch.cat([self.norm_media(media), q], dim=1)
        latents = latents + self.attn(q, kv, kv, need_weights=False)[0]
        return latents + self.ff(latents)


class PerceiverResampler(Resampler):
    """``[N, L, in_dim]`` → ``[N, num_latents, out_dim]`` (num_latents a square: it is laid out as a grid)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int = 4,
        num_heads: int = 8,
        num_latents: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.side = square_side(num_latents)
        self.input = nn.Linear(in_dim, out_dim)
        self.latents = nn.Parameter(torch.randn(num_latents, out_dim) * 0.02)
        self.layers = nn.ModuleList(PerceiverLayer(out_dim, num_heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(out_dim)

    def out_grid(self, rows: int, cols: int) -> tuple[int, int]:
        return self.side, self.side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        media = self.input(x)
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, media)
        return self.norm(latents)
