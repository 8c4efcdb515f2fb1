"""DenseCL restricted to the overlap.

Dense contrastive learning with correspondences given by geometry instead of feature
argmax: a left-strip token's positive is its twin in the right strip; its negatives are
the right-strip tokens of the *other panoramas* of the batch (tokens of the same
panorama may legitimately look alike). With one panorama per batch the other strip pairs
of that panorama are the negatives, so the loss never degenerates to a constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry
from cora.training.losses.strips import extract_strips


def build_densecl(cfg: LossConfig):
    def loss(features: torch.Tensor, tile_geometries: list[ViewGeometry]) -> torch.Tensor:
        batch = features.shape[0]
        left, right = extract_strips(features.float(), tile_geometries, cfg.overlap_columns, cfg.pairing)
        n, length, d = left.shape
        pairs = n // batch
        left = F.normalize(left, dim=-1).reshape(n * length, d)
        right = F.normalize(right, dim=-1).reshape(n * length, d)
        # Group id of each token: its panorama, or its strip pair when there is only one panorama.
        owner = torch.arange(n, device=left.device).repeat_interleave(length)
        group = owner // pairs if batch > 1 else owner
        twin = torch.arange(n * length, device=left.device)
        sims = left @ right.T / cfg.temperature
        # Exclude same-group tokens except the twin itself.
        same = group[:, None] == group[None, :]
        same[twin, twin] = False
        sims = sims.masked_fill(same, float("-inf"))
        return 0.5 * (F.cross_entropy(sims, twin) + F.cross_entropy(sims.T, twin))

    return loss
