"""VICReg pair-wise: variance over dim 1, i.e. spatial diversity within each strip pair."""

from __future__ import annotations

from cora.config.sections.training import LossConfig
from cora.training.losses.vicreg import vicreg_loss


def build_vicreg_pairwise(cfg: LossConfig):
    """Invariance as batch-wise; variance/covariance over the H·k positions of each strip."""
    return vicreg_loss(cfg, var_dim=1)
