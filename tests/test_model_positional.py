"""Panorama positional encoding: true patch-centre longitudes, exact 360° periodicity."""

from __future__ import annotations

import numpy as np
import torch

from cora.model.positional import PanoramaPositionalEncoding, lonlat_encoding
from cora.processors.geometry import global_view, overlap_strip_columns, perspective_view

TILES = [perspective_view(45 * i, 0, 90, 256, i) for i in range(8)]


def test_encoding_is_exactly_periodic_in_longitude():
    lon = np.linspace(-180, 180, 50)
    lat = np.linspace(-60, 60, 50)
    torch.testing.assert_close(
        torch.tensor(lonlat_encoding(lon, lat, 64)),
        torch.tensor(lonlat_encoding(lon + 360.0, lat, 64)),
        rtol=0,
        atol=1e-9,
    )
    # A tile at yaw 315° (spanning 270°→360°) encodes like the same tile at yaw -45°.
    pe = PanoramaPositionalEncoding(128)
    torch.testing.assert_close(
        pe.table([TILES[7]], 16, 16), pe.table([perspective_view(-45, 0, 90, 256)], 16, 16), rtol=0, atol=1e-5
    )


def test_view7_last_columns_match_view0_first_columns():
    """Across the seam, the strip of view 7 that shows what view 0's first columns show gets
    (almost) the encoding of view 0 at those places; far closer than neighbouring columns."""
    pe = PanoramaPositionalEncoding(1024).table(TILES, 16, 16).view(8, 16, 16, 1024).double()
    idx7, pos0 = overlap_strip_columns(TILES[7], TILES[0], cols=16, k=4)
    assert list(idx7) == [9, 10, 11, 12] and pos0.max() < 8  # view 7's right half ↔ view 0's left half
    row = 8
    lo = np.floor(pos0).astype(int)
    w = torch.tensor(pos0 - lo)[:, None]
    at_view0 = pe[0, row, lo] * (1 - w) + pe[0, row, lo + 1] * w
    gap = (pe[7, row, idx7] - at_view0).norm(dim=-1)
    neighbour = (pe[0, row, 1:] - pe[0, row, :-1]).norm(dim=-1).mean()
    assert gap.max() < 0.4 * neighbour
    # The same holds for an ordinary pair (0, 1): no special case at the seam.
    idx0, pos1 = overlap_strip_columns(TILES[0], TILES[1], cols=16, k=4)
    lo = np.floor(pos1).astype(int)
    w = torch.tensor(pos1 - lo)[:, None]
    gap01 = (pe[0, row, idx0] - (pe[1, row, lo] * (1 - w) + pe[1, row, lo + 1] * w)).norm(dim=-1)
    torch.testing.assert_close(gap01, gap, rtol=1e-6, atol=1e-6)


def test_tile_columns_use_true_longitudes():
    # Perspective columns are denser in yaw at the edges: the encoding follows the geometry,
    # not an even yaw spacing.
    lon, lat = TILES[0].grid_lonlat(16, 16, wrap=False)
    table = PanoramaPositionalEncoding(64).table([TILES[0]], 16, 16)[0].numpy()
    np.testing.assert_allclose(table, lonlat_encoding(lon, lat, 64).reshape(256, 64), atol=1e-6)
    steps = np.diff(lon[8])
    assert steps[0] < steps[7]  # edge columns are closer in longitude than centre ones


def test_encoding_is_added_to_tokens():
    views = [global_view(64, 0), *TILES[:2]]
    pe = PanoramaPositionalEncoding(32)
    tokens = torch.zeros(2, 3, 16, 32)
    out = pe(tokens, views, 4, 4)
    torch.testing.assert_close(out[1], pe.table(views, 4, 4))
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_panorama_projector_with_and_without_positions():
    from cora.model.projectors import PanoramaProjector

    views = [global_view(32, 0)] + [perspective_view(45 * i, 0, 90, 32, i + 1) for i in range(8)]
    tokens = torch.randn(2, 9, 16, 8)
    plain = PanoramaProjector(8, 12, positional_encoding="none")
    with_pe = PanoramaProjector(8, 12)
    with_pe.load_state_dict(plain.state_dict())
    a, b = plain(tokens, views, 4, 4), with_pe(tokens, views, 4, 4)
    assert a.shape == b.shape == (2, 16 + 4 * (4 + 7 * 2), 12)
    # The encoding enters before the Linear: the difference is the projected encoding alone.
    table = with_pe.positions.table(views, 4, 4)
    from cora.model.stitching import plan_stitching, stitch

    expected = stitch((table @ with_pe.linear.weight.t()).unsqueeze(0), plan_stitching(views, 4, 4, "stride_views"))
    torch.testing.assert_close(b - a, expected.expand_as(a), rtol=1e-5, atol=1e-5)
