"""plan_views: every crop strategy's view count, order and geometry."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from cora.config.sections.image import ImageProcessingConfig
from cora.processors.strategies import closed_loop_yaws, max_grid, pitch_rows
from cora.processors.views import plan_views


def cfg(**kw) -> ImageProcessingConfig:
    return ImageProcessingConfig(image_size=64, **kw)


def test_default_anyres_e2p_is_global_plus_8_tiles_every_45_degrees() -> None:
    views = plan_views(cfg())
    assert len(views) == 9
    assert (views[0].kind, views[0].projection, views[0].hfov_deg, views[0].vfov_deg) == ("global", "erp", 360, 180)
    assert [v.yaw_deg for v in views[1:]] == [0, 45, 90, 135, 180, 225, 270, 315]
    assert all(v.kind == "tile" and v.projection == "perspective" and v.hfov_deg == 90 for v in views[1:])
    assert [v.index for v in views] == list(range(9))
    assert all((v.width, v.height) == (64, 64) for v in views)


def test_anyres_e2p_closed_loop_and_pitch_grid() -> None:
    views = plan_views(cfg(pitch_min_deg=-45, pitch_max_deg=45, include_global=False))
    # Pitch stride ≤ fov·(1-overlap) = 45 → rows 45, 0, -45 (top first), 8 yaws each.
    assert len(views) == 24
    assert [v.pitch_deg for v in views[::8]] == [45, 0, -45]
    assert views[0].kind == "tile"
    # FOV 100, overlap 0.3: stride ≤ 70 → 6 tiles every 60 (no gap at the seam).
    assert closed_loop_yaws(100, 0.3) == [0, 60, 120, 180, 240, 300]
    assert pitch_rows(-30, 30, 90, 0.5) == [30, 0, -30]
    assert pitch_rows(10, 10, 90, 0.5) == [10]


def test_adjacent_tiles_overlap_by_the_ratio_including_across_the_seam() -> None:
    views = plan_views(cfg(include_global=False))
    for a, b in zip(views, views[1:] + views[:1]):
        lon_a = a.grid_lonlat(1, 64, wrap=False)[0][0]
        right_edge = a.lonlat(np.array(64.0), np.array(32.0), wrap=False)[0]
        left_edge_b = b.lonlat(np.array(0.0), np.array(32.0), wrap=False)[0]
        shared = (right_edge - left_edge_b) % 360
        assert shared == pytest.approx(45.0)  # 50 % of 90°
        assert lon_a[0] < lon_a[-1]


def test_resize_e2p_cubemap() -> None:
    (only,) = plan_views(cfg(crop_strategy="resize"))
    assert only.kind == "global" and only.hfov_deg == 360
    (e2p,) = plan_views(cfg(crop_strategy="e2p", fov_deg=100))
    assert (e2p.kind, e2p.yaw_deg, e2p.pitch_deg, e2p.hfov_deg) == ("tile", 0, 0, 100)
    faces = plan_views(cfg(crop_strategy="cubemap"))
    assert [(f.yaw_deg, f.pitch_deg, f.hfov_deg) for f in faces] == [(y, 0, 90) for y in (0, 90, 180, 270)]
    six = plan_views(cfg(crop_strategy="cubemap", cubemap_faces=6))
    assert [f.pitch_deg for f in six[4:]] == [90, -90] and [f.index for f in six] == list(range(6))


def test_sliding_window_wraps_and_covers_360() -> None:
    views = plan_views(cfg(crop_strategy="sliding_window", window_deg=120, overlap_ratio=0.25))
    # stride ≤ 90 → 4 windows every 90°, each 120° wide: 30° shared, last one across the seam.
    assert [v.yaw_deg for v in views] == [0, 90, 180, 270]
    assert all(v.kind == "crop" and v.projection == "erp" and v.hfov_deg == 120 and v.vfov_deg == 180 for v in views)
    lon, _ = views[2].grid_lonlat(1, 4)
    np.testing.assert_allclose(lon[0], [135, 165, -165, -135])  # crosses ±180


def test_anyres_grid_and_anyres_max_budget() -> None:
    views = plan_views(cfg(crop_strategy="anyres", anyres_grid=(2, 4)))
    assert len(views) == 9 and views[0].kind == "global"
    crops = views[1:]
    assert [(c.yaw_deg, c.pitch_deg) for c in crops[:4]] == [(-135, 45), (-45, 45), (45, 45), (135, 45)]
    assert all(c.kind == "crop" and (c.hfov_deg, c.vfov_deg) == (90, 90) for c in crops)
    # The crops tile the ERP exactly: their lon/lat rectangles' union is the sphere.
    assert sum(c.hfov_deg * c.vfov_deg for c in crops) == 360 * 180
    assert max_grid(12) == (2, 4) and max_grid(18) == (3, 6) and max_grid(1) == (1, 1)
    assert len(plan_views(cfg(crop_strategy="anyres_max", anyres_max_patches=32, include_global=False))) == 32


def test_include_global_only_applies_to_strategies_that_define_it() -> None:
    assert len(plan_views(cfg(include_global=False))) == 8
    assert len(plan_views(cfg(crop_strategy="cubemap", include_global=True))) == 4


def test_bad_config_errors_name_the_field_and_values() -> None:
    with pytest.raises(ValidationError, match="crop_strategy"):
        cfg(crop_strategy="fisheye")
    with pytest.raises(ValidationError, match="pitch_min_deg"):
        cfg(pitch_min_deg=30, pitch_max_deg=0)
    from cora.processors.strategies import get_strategy

    with pytest.raises(ValueError, match="'fisheye'.*anyres_e2p"):
        get_strategy("fisheye")
