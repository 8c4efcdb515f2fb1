from __future__ import annotations

import numpy as np
import pytest

from cora.processors.geometry import (
    ViewGeometry,
    erp_lonlat_to_pixel,
    erp_pixel_to_lonlat,
    global_view,
    overlap_strip_columns,
    perspective_view,
)


def test_erp_pixel_convention_round_trips() -> None:
    x, y = np.array([0.0, 511.5, 1023.0]), np.array([0.0, 255.5, 511.0])
    lon, lat = erp_pixel_to_lonlat(x, y, 1024, 512)
    # Centre of the image (between columns 511 and 512) is lon 0; first pixel centre is near -180.
    np.testing.assert_allclose(lon, [-180 + 180 / 1024, 0.0, 180 - 180 / 1024])
    np.testing.assert_allclose(lat, [90 - 90 / 512, 0.0, -90 + 90 / 512])
    np.testing.assert_allclose(erp_lonlat_to_pixel(lon, lat, 1024, 512), (x, y))


def test_perspective_centre_and_edges() -> None:
    view = perspective_view(30.0, 0.0, 90.0, 256)
    lon, lat = view.lonlat(np.array([128.0, 0.0, 256.0]), np.array([128.0, 128.0, 128.0]))
    np.testing.assert_allclose(lon, [30.0, -15.0, 75.0], atol=1e-9)  # ±fov/2 at the pixel edges
    np.testing.assert_allclose(lat, 0.0, atol=1e-9)
    up = perspective_view(0.0, 60.0, 90.0, 64)
    assert up.lonlat(np.array(32.0), np.array(32.0))[1] == pytest.approx(60.0)


def test_tile_longitudes_wrap_and_unwrap() -> None:
    tile = perspective_view(315.0, 0.0, 90.0, 256, index=7)
    lon, _ = tile.grid_lonlat(16, 16, wrap=False)
    assert lon[8, 0] == pytest.approx(270 + 1.8, abs=0.1) and lon[8, -1] == pytest.approx(360 - 1.8, abs=0.1)
    wrapped, _ = tile.grid_lonlat(16, 16)
    assert np.all((wrapped >= -180) & (wrapped < 180))
    np.testing.assert_allclose(np.cos(np.radians(wrapped)), np.cos(np.radians(lon)), atol=1e-12)


def test_global_view_covers_the_sphere() -> None:
    lon, lat = global_view(256).grid_lonlat(2, 4)
    np.testing.assert_allclose(lon[0], [-135, -45, 45, 135])
    np.testing.assert_allclose(lat[:, 0], [45, -45])


def test_overlap_strips_match_longitudes_across_the_seam() -> None:
    a = perspective_view(315.0, 0.0, 90.0, 256, index=7)
    b = perspective_view(0.0, 0.0, 90.0, 256, index=0)
    idx_a, pos_b = overlap_strip_columns(a, b, cols=16, k=4)
    lon_a = a.grid_lonlat(16, 16)[0][8, idx_a]
    # Longitude of b at the fractional columns, via its column centres.
    lon_b_cols = b.grid_lonlat(16, 16, wrap=False)[0][8]
    lon_b = np.interp(pos_b, np.arange(16), lon_b_cols)
    np.testing.assert_allclose(np.cos(np.radians(lon_a - lon_b)), 1.0, atol=1e-3)
    assert list(idx_a) == sorted(idx_a) and len(set(idx_a)) == 4


def test_non_overlapping_views_are_an_error() -> None:
    with pytest.raises(ValueError, match="do not overlap"):
        overlap_strip_columns(perspective_view(0, 0, 60, 64), perspective_view(90, 0, 60, 64), 8, 2)


def test_geometry_dict_round_trip() -> None:
    view = perspective_view(45.0, -10.0, 90.0, 64, index=3)
    assert ViewGeometry.from_dict(view.to_dict()) == view
