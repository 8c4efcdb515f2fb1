"""Stage-1 diagnostics on validation: is the overlap learnt, and are features collapsing?

Every function takes tensors, runs without gradients in fp32 and returns a Python float.
:func:`overlap_diagnostics` computes the whole set from the projector output of the tiles
(and, optionally, the resampler output) for logging.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from cora.processors.geometry import ViewGeometry
from cora.training.losses.strips import Pairing, extract_strips


@torch.no_grad()
def adj_cos(left: torch.Tensor, right: torch.Tensor) -> float:
    """Mean cosine similarity of geometrically matched strip tokens ``[N, L, D]``. Ideal → 1."""
    return F.cosine_similarity(left.float(), right.float(), dim=-1).mean().item()


@torch.no_grad()
def adj_mse(left: torch.Tensor, right: torch.Tensor) -> float:
    """Mean squared error between matched strip tokens ``[N, L, D]``.

    Ideal → 0 (read it with feat_std: 0 reached by collapse is bad)."""
    return F.mse_loss(left.float(), right.float()).item()


@torch.no_grad()
def overlap_ret_acc(left: torch.Tensor, right: torch.Tensor) -> float:
    """Strip retrieval: each left strip (mean-pooled, ``[N, L, D]``) finds its right twin among all N
    right strips by cosine.

    Fraction retrieved correctly. Ideal → 1; chance is 1/N.
    """
    a = F.normalize(left.float().mean(1), dim=-1)
    b = F.normalize(right.float().mean(1), dim=-1)
    hits = (a @ b.T).argmax(dim=1) == torch.arange(a.shape[0], device=a.device)
    return hits.float().mean().item()


@torch.no_grad()
def hungarian_acc(left: torch.Tensor, right: torch.Tensor) -> float:
    """Position matching inside each strip pair: Hungarian assignment (scipy ``linear_sum_assignment``)
    of the L left tokens to the L right tokens by cosine cost; fraction assigned to their true position.

    Ideal → 1 (features keep where in the strip they are); chance is 1/L. The right tokens are shuffled
    (a fixed seeded permutation per strip) before the assignment: with tied costs (identical, collapsed
    features) the solver returns the identity, which would otherwise score a perfect 1.
    """
    a = F.normalize(left.float(), dim=-1)
    b = F.normalize(right.float(), dim=-1)
    cost = -(a @ b.transpose(1, 2)).cpu().numpy()
    rng = np.random.default_rng(0)
    correct = 0
    for c in cost:
        perm = rng.permutation(c.shape[1])  # column j of the shuffled cost is true position perm[j]
        rows, cols = linear_sum_assignment(c[:, perm])
        correct += int((perm[cols] == rows).sum())
    return correct / float(cost.shape[0] * cost.shape[1])


@torch.no_grad()
def feat_std(features: torch.Tensor) -> float:
    """Collapse detector: std over tokens of the L2-normalised features ``[..., D]``, averaged over dims.

    0 means collapse (every token the same); higher is better, ≈ 1/√D for features spread over the sphere.
    """
    x = F.normalize(features.float().reshape(-1, features.shape[-1]), dim=-1)
    return x.std(dim=0).mean().item() if x.shape[0] > 1 else 0.0


@torch.no_grad()
def eff_rank(features: torch.Tensor) -> float:
    """Effective rank (Roy & Vetterli): exp of the entropy of the normalised singular values of the
    centred token matrix ``[N, D]``. Higher is better; at most min(N, D); 1 means all variance on one axis.
    """
    x = features.float().reshape(-1, features.shape[-1])
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * p.log()).sum().item()))


def r_eff_rank(resampler_features: torch.Tensor) -> float:
    """Effective rank of the resampler output (:func:`eff_rank` one step before the projector). Higher is better."""
    return eff_rank(resampler_features)


@torch.no_grad()
def overlap_diagnostics(
    features: torch.Tensor,
    tile_geometries: list[ViewGeometry],
    k: int | None = None,
    resampler_features: torch.Tensor | None = None,
    pairing: Pairing = "columns",
) -> dict[str, float]:
    """All stage-1 diagnostics of one validation batch. ``features [B, T, H, W, D]`` (projector, tiles);
    ``pairing``: the loss's pairing, so the diagnostics judge the pairs the loss trains on."""
    left, right = extract_strips(features.float(), tile_geometries, k, pairing)
    out = {
        "adj_cos": adj_cos(left, right),
        "adj_mse": adj_mse(left, right),
        "overlap_ret_acc": overlap_ret_acc(left, right),
        "hungarian_acc": hungarian_acc(left, right),
        "feat_std": feat_std(features),
        "eff_rank": eff_rank(features),
    }
    if resampler_features is not None:
        out["r_eff_rank"] = r_eff_rank(resampler_features)
    return out
