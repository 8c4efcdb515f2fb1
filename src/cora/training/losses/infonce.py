"""InfoNCE on overlap strips, with a within-tile term.

Each token of the left strip must pick its geometric twin in the right strip:
* the **global** term uses every right-strip token of the batch (all pairs, all samples)
  as candidates;
* the **within-tile** term uses only the tokens of the same strip pair, the hardest
  negatives (neighbouring positions of the same place), so features keep spatial detail.
The loss is their mean, symmetric in left/right, at temperature ``cfg.temperature``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry
from cora.training.losses.strips import extract_strips


def symmetric_nce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the diagonal as target, both directions. ``logits [..., M, M]``."""
    target = torch.arange(logits.shape[-1], device=logits.device).expand(logits.shape[:-1])
    flat = logits.reshape(-1, logits.shape[-1])
    return 0.5 * (
        F.cross_entropy(flat, target.reshape(-1))
        + F.cross_entropy(logits.transpose(-1, -2).reshape(-1, logits.shape[-1]), target.reshape(-1))
    )


def build_infonce(cfg: LossConfig):
    def loss(features: torch.Tensor, tile_geometries: list[ViewGeometry]) -> torch.Tensor:
        left, right = extract_strips(features.float(), tile_geometries, cfg.overlap_columns, cfg.pairing)
        left, right = F.normalize(left, dim=-1), F.normalize(right, dim=-1)
        d = left.shape[-1]
        everything = symmetric_nce(left.reshape(-1, d) @ right.reshape(-1, d).T / cfg.temperature)
        within = symmetric_nce(left @ right.transpose(1, 2) / cfg.temperature)
        return 0.5 * (everything + within)

    return loss
