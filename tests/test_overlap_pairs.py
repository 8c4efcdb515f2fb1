"""Geometry-exact overlap pairs (``loss.pairing: exact``) against the row-index pairing, and diagnostics that a
collapsed model cannot flatter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.config.sections.image import ImageProcessingConfig
from cora.config.sections.training import LossConfig
from cora.processors.geometry import perspective_view
from cora.processors.views import plan_views
from cora.training import diagnostics
from cora.training.losses import build_loss
from cora.training.losses.strips import exact_strip, extract_strips, pairing_error
from tests.test_losses import D, H, W, field_features


def _views(pitch: float) -> list:
    cfg = ImageProcessingConfig(image_size=256, pitch_min_deg=-pitch, pitch_max_deg=pitch)
    return [g for g in plan_views(cfg) if g.kind != "global"]


@pytest.mark.parametrize("pitch", [0.0, 45.0])
def test_exact_pairs_look_in_the_same_direction(pitch):
    tiles = _views(pitch)
    exact = pairing_error(tiles, 16, 16, None, "exact")
    columns = pairing_error(tiles, 16, 16, None, "columns")
    assert exact["pairs"] == columns["pairs"] == (8 if pitch == 0 else 24)
    assert exact["max_deg"] < 0.1
    # The row-index pairing is off by degrees (measured: 1.74° mean, 4.9° max flat; 9.5° / 24° pitched ±45°).
    assert columns["mean_deg"] > (1.0 if pitch == 0 else 5.0)


def test_exact_strip_is_the_inverse_of_the_tile_geometry():
    a, b = perspective_view(0, 30, 90, 64, 0), perspective_view(45, 30, 90, 64, 1)
    flat, pos = exact_strip(a, b, 8, 8, 2)
    assert len(flat) == len(pos) == 16 and (pos >= 0).all() and (pos <= 7).all()
    lon_a, lat_a = a.grid_lonlat(8, 8)
    lon_b, lat_b = b.lonlat((pos[:, 1] + 0.5) * 8, (pos[:, 0] + 0.5) * 8)
    np.testing.assert_allclose(lat_b, lat_a.reshape(-1)[flat], atol=1e-9)
    np.testing.assert_allclose(((lon_b - lon_a.reshape(-1)[flat] + 180) % 360) - 180, 0, atol=1e-9)


def test_exact_strips_agree_better_on_a_smooth_field_with_pitched_tiles():
    tiles = [perspective_view(i * 45.0, 40.0, 90.0, 64, i) for i in range(8)]
    feats = field_features(tiles)
    mse = {pairing: diagnostics.adj_mse(*extract_strips(feats, tiles, 2, pairing)) for pairing in ("columns", "exact")}
    assert mse["exact"] < 0.5 * mse["columns"]


def test_exact_pairing_trains_through_every_loss():
    tiles = [perspective_view(i * 45.0, 0.0, 90.0, 64, i) for i in range(8)]
    feats = field_features(tiles).requires_grad_(True)
    for name in ("vicreg", "vicreg_pairwise", "infonce", "densecl"):
        loss = build_loss(LossConfig(type=name, overlap_columns=2, pairing="exact"))(feats, tiles)
        assert loss.dim() == 0 and torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, feats)
        assert grad.abs().sum() > 0


def test_diagnostics_use_the_loss_pairing():
    tiles = [perspective_view(i * 45.0, 40.0, 90.0, 64, i) for i in range(8)]
    feats = field_features(tiles)
    exact = diagnostics.overlap_diagnostics(feats, tiles, 2, pairing="exact")
    columns = diagnostics.overlap_diagnostics(feats, tiles, 2, pairing="columns")
    assert exact["adj_mse"] < columns["adj_mse"]


def test_hungarian_scores_identical_features_at_chance():
    """A collapsed model (every token the same) ties every cost: it must not score the identity's 1.0."""
    n, length = 16, H * 2
    same = torch.ones(n, length, D)
    assert diagnostics.hungarian_acc(same, same) < 3.0 / length
    distinct = torch.eye(length)[None].repeat(n, 1, 1)  # every position its own direction
    assert diagnostics.hungarian_acc(distinct, distinct) == 1.0
    tiles = [perspective_view(i * 45.0, 0.0, 90.0, 64, i) for i in range(8)]
    collapsed = diagnostics.overlap_diagnostics(torch.ones(4, 8, H, W, D), tiles, 2)
    assert collapsed["hungarian_acc"] < 0.2


def test_validation_skips_overlap_diagnostics_when_the_stage_has_no_overlap_loss():
    """Cube faces (FOV 90° every 90°) never overlap: a stage without an overlap loss must still validate."""
    from types import SimpleNamespace

    from cora.config.sections.training import StageConfig
    from cora.training.module import StageData, StageModule, StagePlan

    faces = [perspective_view(90.0 * i, 0.0, 90.0, 64, i) for i in range(4)]

    class FaceModel(torch.nn.Module):
        def forward(self, pixel_values, geometries, input_ids=None, attention_mask=None, labels=None):
            loss = pixel_values.mean() * 0 + 1.0
            return SimpleNamespace(loss=loss, logits=None, overlap_features=torch.randn(2, 4, H, W, D),
                                   tile_geometries=faces, resampler_features=None)  # fmt: skip

    stage = StageConfig(vicreg_projector="frozen", overlap_loss_weight=0.0)
    module = StageModule(FaceModel(), "resampler", stage, StageData([], None, list), StagePlan(1))
    batch = {"pixel_values": torch.rand(2, 4, 3, 8, 8), "geometries": faces, "labels": torch.zeros(2, 3)}
    module.validation_step(batch, 0)
    assert module._val_sums == {"val_loss": 1.0, "val_lm_loss": 1.0}
