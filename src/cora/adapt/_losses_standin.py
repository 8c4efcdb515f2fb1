"""Stand-in for ``cora.training.losses`` until the training helper's registry is on main (then delete this file).

Same contract: ``build_loss(LossConfig)`` → ``loss(features [B, T, H, W, D], geometries) -> scalar``, global views
ignored, adjacent tiles (closing the 360° loop) paired on their overlap strips found from geometry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry, overlap_strip_columns


def extract_strips(features: torch.Tensor, geometries: list[ViewGeometry],
                   k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)`` ``[B·P, H·k, D]``: token j of both shows the same place (P overlapping pairs)."""
    keep = [i for i, g in enumerate(geometries) if g.kind != "global"]
    feats, geoms = features[:, keep], [geometries[i] for i in keep]
    _, tiles, h, w, _ = feats.shape
    k = k or max(1, w // 4)
    order = sorted(range(tiles), key=lambda i: geoms[i].yaw_deg % 360.0)
    lefts, rights = [], []
    for a, b in zip(order, order[1:] + order[:1], strict=True):
        try:
            idx_a, pos_b = overlap_strip_columns(geoms[a], geoms[b], w, k, rows=h)
        except ValueError:
            continue
        lo = torch.as_tensor(pos_b).floor().long().clamp(0, w - 1)
        hi = (lo + 1).clamp(max=w - 1)
        frac = (torch.as_tensor(pos_b) - lo).to(feats.dtype).view(1, 1, -1, 1)
        right = feats[:, b, :, lo] * (1 - frac) + feats[:, b, :, hi] * frac  # [B, H, k, D]
        lefts.append(feats[:, a][:, :, torch.as_tensor(idx_a)].flatten(1, 2))
        rights.append(right.flatten(1, 2))
    if not lefts:
        raise ValueError(f"no overlapping tile pairs among {tiles} tiles (yaws {[g.yaw_deg for g in geoms]}): "
                         f"the overlap loss needs overlapping views (input_mode anyres_e2p)")
    return torch.stack(lefts, 1).flatten(0, 1), torch.stack(rights, 1).flatten(0, 1)


def _vicreg(left: torch.Tensor, right: torch.Tensor, cfg: LossConfig, var_dim: int) -> torch.Tensor:
    inv = F.mse_loss(left, right)

    def var_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x - x.mean(dim=var_dim, keepdim=True)
        std = torch.sqrt(x.var(dim=var_dim) + 1e-4)
        flat = x.reshape(-1, x.shape[-1])
        cov = flat.T @ flat / max(1, flat.shape[0] - 1)
        off = cov - torch.diag(torch.diag(cov))
        return F.relu(1.0 - std).mean(), off.pow(2).sum() / x.shape[-1]

    var_l, cov_l = var_cov(left)
    var_r, cov_r = var_cov(right)
    return cfg.sim_weight * inv + cfg.var_weight * (var_l + var_r) / 2 + cfg.cov_weight * (cov_l + cov_r)


def _densecl(left: torch.Tensor, right: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    q = F.normalize(left.flatten(0, 1), dim=-1)
    k = F.normalize(right.flatten(0, 1), dim=-1)
    logits = q @ k.T / cfg.temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def build_loss(cfg: LossConfig):
    if cfg.type not in ("vicreg", "vicreg_pairwise", "densecl"):
        raise ValueError(f"loss.type {cfg.type!r} is unknown; valid: densecl, vicreg, vicreg_pairwise")

    def loss(features: torch.Tensor, geometries: list[ViewGeometry]) -> torch.Tensor:
        left, right = extract_strips(features.float(), geometries, cfg.overlap_columns)
        if cfg.type == "densecl":
            return _densecl(left, right, cfg)
        # batch-wise: variance over the strips (dim 0); pair-wise: over the positions of each strip (dim 1)
        return _vicreg(left, right, cfg, var_dim=0 if cfg.type == "vicreg" else 1)

    return loss
