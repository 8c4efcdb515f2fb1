"""VICReg pair-wise (SPEC §4): variance over dim 1, i.e. spatial diversity within each strip pair."""

from __future__ import annotations

import torch

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry
from cora.training.losses import register
from cora.training.losses.strips import extract_strips
from cora.training.losses.vicreg import vicreg_terms


@register("vicreg_pairwise")
def build_vicreg_pairwise(cfg: LossConfig):
    """Strips ``[B·P, H·k, D]``: invariance as batch-wise, variance/covariance over the H·k positions of a strip."""

    def loss(features: torch.Tensor, tile_geometries: list[ViewGeometry]) -> torch.Tensor:
        left, right = extract_strips(features.float(), tile_geometries, cfg.overlap_columns)
        inv, var, cov = vicreg_terms(left, right, var_dim=1)
        return cfg.sim_weight * inv + cfg.var_weight * var + cfg.cov_weight * cov

    return loss
