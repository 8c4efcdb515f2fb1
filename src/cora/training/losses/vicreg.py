"""VICReg batch-wise: ``sim·invariance + var·variance over dim 0 + cov·covariance``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry
from cora.training.losses.strips import extract_strips


def variance_term(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Hinge on the standard deviation along ``dim``: ``mean(relu(1 - std))`` (0 when spread ≥ 1)."""
    n = x.shape[dim]
    std = torch.sqrt(x.var(dim=dim, correction=1 if n > 1 else 0) + 1e-4)
    return F.relu(1.0 - std).mean()


def covariance_term(x: torch.Tensor) -> torch.Tensor:
    """Off-diagonal covariance of ``x [..., N, D]`` over N, squared, summed, divided by D; batch-averaged."""
    n, d = x.shape[-2], x.shape[-1]
    x = x - x.mean(dim=-2, keepdim=True)
    cov = x.transpose(-1, -2) @ x / max(n - 1, 1)
    off = cov - torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))
    return (off.pow(2).sum(dim=(-2, -1)) / d).mean()


def vicreg_terms(left: torch.Tensor, right: torch.Tensor, var_dim: int) -> tuple[torch.Tensor, ...]:
    """(invariance, variance, covariance) of strips ``[N, L, D]``; variance along ``var_dim``.

    Covariance is taken over the same axis as the variance: batch-wise over the N strips
    (per strip position), pair-wise over the L positions of each strip.
    """
    inv = F.mse_loss(left, right)
    var = 0.5 * (variance_term(left, var_dim) + variance_term(right, var_dim))
    if var_dim == 0:
        # [N, L, D] -> [L, N, D]: one covariance per strip position, over the strips.
        cov = 0.5 * (covariance_term(left.transpose(0, 1)) + covariance_term(right.transpose(0, 1)))
    else:
        cov = 0.5 * (covariance_term(left) + covariance_term(right))
    return inv, var, cov


def vicreg_loss(cfg: LossConfig, var_dim: int):
    """The weighted VICReg loss on geometry strips ``[B·P, H·k, D]``, variance along ``var_dim``."""

    def loss(features: torch.Tensor, tile_geometries: list[ViewGeometry]) -> torch.Tensor:
        left, right = extract_strips(features.float(), tile_geometries, cfg.overlap_columns, cfg.pairing)
        inv, var, cov = vicreg_terms(left, right, var_dim=var_dim)
        return cfg.sim_weight * inv + cfg.var_weight * var + cfg.cov_weight * cov

    return loss


def build_vicreg(cfg: LossConfig):
    """Batch-wise VICReg: variance over dim 0 of the strips (across pairs and samples)."""
    return vicreg_loss(cfg, var_dim=0)
