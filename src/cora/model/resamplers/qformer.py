"""``qformer`` (BLIP-2 style): learned queries; each layer self-attention, cross-attention, FFN."""

from __future__ import annotations

import torch
from torch import nn

from cora.model.resamplers.base import Resampler, square_side


class QFormerLayer(nn.Module):
    """Queries ``[N, Q, D]``; post-LN like BERT."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, queries: torch.Tensor, media: torch.Tensor) -> torch.Tensor:
        queries = self.norm1(queries + self.self_attn(queries, queries, queries, need_weights=False)[0])
        queries = self.norm2(queries + self.cross_attn(queries, media, media, need_weights=False)[0])
        return self.norm3(queries + self.ff(queries))


class QFormerResampler(Resampler):
    """``[N, L, in_dim]`` → ``[N, num_latents, out_dim]``."""

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
        self.media_norm = nn.LayerNorm(in_dim)
        self.media_proj = nn.Linear(in_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(num_latents, out_dim) * 0.02)
        self.layers = nn.ModuleList(QFormerLayer(out_dim, num_heads, dropout) for _ in range(depth))

    def out_grid(self, rows: int, cols: int) -> tuple[int, int]:
        return self.side, self.side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        media = self.media_proj(self.media_norm(x))
        queries = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, media)
        return queries
