"""Every registered resampler: output shape and token grid."""

from __future__ import annotations

import pytest
import torch

from cora.model.resamplers import RESAMPLERS, build_resampler

EXPECTED_GRID = {"spatial_pool": 4, "avgpool": 4, "conv": 4, "perceiver": 3, "qformer": 3}


@pytest.mark.parametrize("name", sorted(RESAMPLERS))
def test_resampler_output_shape_and_grid(name):
    torch.manual_seed(0)
    in_dim = 16
    out_dim = 16 if name == "identity" else 24
    model = build_resampler(
        name,
        in_dim,
        out_dim,
        depth=1,
        d_state=4,
        hidden_dim=20,
        num_heads=2,
        num_latents=9,
        pool_size=2,
        drop_ratio=0.5,
    )
    x = torch.randn(3, 64, in_dim)
    y = model.eval()(x)
    side = EXPECTED_GRID.get(name, 8)
    assert model.out_grid(8, 8) == (side, side)
    assert y.shape == (3, side * side, out_dim)
    assert torch.isfinite(y).all()


def test_unknown_resampler_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown resampler 'mamba'.*bimamba.*c_abstractor"):
        build_resampler("mamba", 8, 8)


def test_identity_needs_equal_widths():
    with pytest.raises(ValueError, match="latent_dim"):
        build_resampler("identity", 8, 16)


def test_masked_drop_masks_only_in_training():
    torch.manual_seed(0)
    model = build_resampler("masked_drop", 8, 8, drop_ratio=0.5)
    x = torch.randn(2, 100, 8)
    with torch.no_grad():
        model.mask_token.fill_(7.0)
        masked = (model.train()(x) == 7.0).all(-1).float().mean()
        assert 0.3 < masked < 0.7
        assert not (model.eval()(x) == 7.0).all(-1).any()


def test_c_abstractor_pooling_halves_the_grid():
    model = build_resampler("c_abstractor", 8, 16, depth=1, pool_size=2, c_abstractor_pool=True)
    assert model(torch.randn(1, 16, 8)).shape == (1, 4, 16)
    assert model.out_grid(4, 4) == (2, 2)
