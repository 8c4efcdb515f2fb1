"""Overlap losses and stage-1 diagnostics: geometry-matched strips, low vs high loss, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from cora.config.sections.training import LossConfig
from cora.processors.geometry import global_view, perspective_view
from cora.training import diagnostics
from cora.training.losses import available_losses, build_loss
from cora.training.losses.strips import extract_strips, tile_pairs

H = W = 8
D = 16


def ring(n: int = 8, size: int = 64):
    return [perspective_view(i * 360.0 / n, 0.0, 90.0, size, index=i) for i in range(n)]


def field_features(geoms, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """Features that are a smooth function of (lon, lat): overlapping tiles agree where they see the same place."""
    g = torch.Generator().manual_seed(seed)
    freqs = torch.randn(batch, D, 3, generator=g) * 1.5
    phase = torch.rand(batch, D, generator=g) * 2 * math.pi
    out = []
    for view in geoms:
        lon, lat = view.grid_lonlat(H, W)
        lon = torch.tensor(lon, dtype=torch.float32).deg2rad()
        lat = torch.tensor(lat, dtype=torch.float32).deg2rad()
        basis = torch.stack([lon.cos() * lat.cos(), lon.sin() * lat.cos(), lat.sin()], -1)  # [H, W, 3]
        out.append(torch.sin(torch.einsum("hwc,bdc->bhwd", basis, freqs) + phase[:, None, None]) * 2.0)
    return torch.stack(out, 1)  # [B, T, H, W, D]


def test_pairs_close_the_loop_and_skip_global():
    geoms = ring()
    pairs = tile_pairs(geoms, H, W, 2)
    assert [(a, b) for a, b, *_ in pairs] == [(i, (i + 1) % 8) for i in range(8)]
    # Right columns of tile i against left positions of tile i+1.
    for _, _, idx_a, pos_b in pairs:
        assert min(idx_a) >= W // 2 and max(pos_b) < W // 2
    feats = torch.randn(2, 9, H, W, D)
    left, right = extract_strips(feats, [global_view(64), *ring()], 2)
    assert left.shape == right.shape == (2 * 8, H * 2, D)


def test_no_overlap_is_an_error_not_an_empty_loss():
    geoms = [perspective_view(0, 0, 60, 64, 0), perspective_view(180, 0, 60, 64, 1)]
    with pytest.raises(ValueError, match="no overlapping tile pairs"):
        build_loss(LossConfig())(torch.randn(2, 2, H, W, D), geoms)


def test_geometry_matched_strips_agree():
    left, right = extract_strips(field_features(ring()), ring(), 2)
    unrelated = extract_strips(field_features(ring(), seed=1), ring(), 2)[1]
    assert diagnostics.adj_mse(left, right) < 0.1 * diagnostics.adj_mse(left, unrelated)


@pytest.mark.parametrize("name", ["vicreg", "vicreg_pairwise", "infonce", "densecl"])
def test_loss_low_for_matching_high_for_unrelated(name):
    assert name in available_losses()
    loss = build_loss(LossConfig(type=name, overlap_columns=2, temperature=0.1))
    geoms = ring()
    matched = field_features(geoms)
    # Unrelated: each tile gets the features of a different scene, so strips disagree.
    unrelated = torch.stack([field_features(geoms, seed=10 + t)[:, t] for t in range(8)], 1)
    low, high = loss(matched, geoms), loss(unrelated, geoms)
    assert low.dim() == 0 and low.requires_grad is False
    assert low.item() < 0.5 * high.item(), (low.item(), high.item())


@pytest.mark.parametrize("name", ["vicreg", "vicreg_pairwise", "infonce", "densecl"])
def test_loss_is_scalar_attached_and_gradients_flow(name):
    loss_fn = build_loss(LossConfig(type=name, overlap_columns=2))
    feats = torch.randn(2, 8, H, W, D, dtype=torch.bfloat16, requires_grad=True)
    loss = loss_fn(feats, ring())
    assert loss.shape == () and loss.dtype == torch.float32 and loss.grad_fn is not None
    loss.backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def test_vicreg_identical_strips_only_regularisers_remain():
    cfg = LossConfig(overlap_columns=2)
    geoms = ring()
    feats = field_features(geoms, batch=8)
    left, _ = extract_strips(feats, geoms, 2)
    from cora.training.losses.vicreg import vicreg_terms

    inv, _, _ = vicreg_terms(left, left.clone(), 0)
    assert inv.item() == 0.0
    assert (
        build_loss(cfg)(feats, geoms).item()
        < 25
        * torch.nn.functional.mse_loss(left, extract_strips(field_features(geoms, batch=8, seed=3), geoms, 2)[1]).item()
    )


def test_unknown_loss_names_the_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"unknown overlap loss 'vicregg' \(did you mean 'vicreg'.*; valid: densecl, infonce, vicreg, vicreg_pair",
    ):
        build_loss(LossConfig(type="vicregg"))


def test_diagnostics_reference_values():
    geoms = ring()
    feats = field_features(geoms, batch=4)
    good = diagnostics.overlap_diagnostics(feats, geoms, 2, resampler_features=feats)
    assert good["adj_cos"] > 0.95 and good["overlap_ret_acc"] == 1.0 and good["hungarian_acc"] > 0.9
    collapsed = torch.ones(4, 8, H, W, D)
    bad = diagnostics.overlap_diagnostics(collapsed, geoms, 2)
    assert bad["feat_std"] < 1e-6 and bad["eff_rank"] == 0.0 and good["feat_std"] > 0.05
    # Effective rank of an isotropic cloud is close to its dimension; of a rank-1 cloud close to 1.
    assert diagnostics.eff_rank(torch.randn(4000, 8)) > 7.5
    assert diagnostics.eff_rank(torch.randn(500, 1) * torch.randn(1, 8)) < 1.01
    # Hungarian on shuffled positions is near chance.
    left, right = extract_strips(feats, geoms, 2)
    perm = torch.randperm(left.shape[1], generator=torch.Generator().manual_seed(0))
    assert diagnostics.hungarian_acc(left, right[:, perm]) < 0.3
