"""``identity``: the vision tokens as they are (needs ``latent_dim`` = the tower's width)."""

from __future__ import annotations

import torch

from cora.model.resamplers.base import Resampler


class IdentityResampler(Resampler):
    """``[N, L, D]`` → ``[N, L, D]``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if in_dim != out_dim:
            raise ValueError(
                f"identity resampler keeps the width: set models.latent_dim to the vision width "
                f"{in_dim} (got {out_dim})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
