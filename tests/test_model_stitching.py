"""Stitching modes: token counts follow from the geometry; column order follows longitude."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.model.stitching import plan_stitching, stitch
from cora.processors.geometry import global_view, perspective_view


def anyres_e2p(size: int, n_tiles: int = 8, fov: float = 90.0):
    return [global_view(size, 0)] + [perspective_view(i * 360 / n_tiles, 0, fov, size, i + 1) for i in range(n_tiles)]


@pytest.mark.parametrize(
    "grid,expected",
    [
        (16, {"stride_views": 1408, "unique": 1280, "concat": 2304}),
        (8, {"stride_views": 352, "unique": 320, "concat": 576}),
    ],
)
def test_reference_token_counts(grid, expected):
    views = anyres_e2p(256)
    assert {m: plan_stitching(views, grid, grid, m).num_tokens for m in expected} == expected


def test_counts_follow_the_geometry():
    # 4 cube faces (90° apart, 90° FOV): no overlap, nothing dropped.
    faces = [perspective_view(90 * i, 0, 90, 256, i) for i in range(4)]
    assert plan_stitching(faces, 16, 16, "stride_views").num_tokens == 4 * 256
    # 12 tiles at 30° stride: two thirds of each later tile overlap its left neighbour.
    views = anyres_e2p(256, n_tiles=12)
    counts = {m: plan_stitching(views, 16, 16, m).num_tokens for m in ("stride_views", "unique")}
    plan = plan_stitching(views, 16, 16, "unique")
    per_tile = [len(c) for _, c in plan.segments[1]]
    assert len(set(per_tile)) == 1 and counts["unique"] == 256 + 12 * per_tile[0] * 16
    assert counts["stride_views"] == counts["unique"] + (16 - per_tile[0]) * 16
    # Two rings of tiles (pitch ±30°) stitch ring by ring; a pitched tile's middle row spans
    # more longitude, so its ring drops more columns than the equator ring.
    ring = {p: [perspective_view(45 * i, p, 90, 256, i) for i in range(8)] for p in (-30, 30)}
    alone = {p: plan_stitching(ring[p], 16, 16, "stride_views").num_tokens for p in ring}
    both = plan_stitching(ring[-30] + ring[30], 16, 16, "stride_views")
    assert len(both.segments) == 2 and both.num_tokens == alone[-30] + alone[30]
    assert alone[30] < 1152


def test_stitched_columns_follow_longitude():
    views = anyres_e2p(256)
    for mode, span in (("stride_views", 405.0), ("unique", 360.0)):
        plan = plan_stitching(views, 16, 16, mode)
        lons = []
        for view, cols in plan.segments[1]:
            lon = views[view].grid_lonlat(16, 16, wrap=False)[0][8]
            lons += [lon[c] for c in cols]
        lons = np.unwrap(np.radians(lons), discont=np.pi) * 180 / np.pi
        assert np.all(np.diff(lons) > 0), mode
        assert abs((lons[-1] - lons[0]) - span) < 12.0, (mode, lons[-1] - lons[0])


def test_stitch_places_the_planned_tokens():
    views = anyres_e2p(32)
    b, v, rows, cols = 2, len(views), 4, 4
    # token value = view * 100 + row * 10 + col
    ids = torch.tensor([[[vi * 100 + r * 10 + c for r in range(rows) for c in range(cols)] for vi in range(v)]] * b)
    out = stitch(ids.unsqueeze(-1).float(), plan_stitching(views, rows, cols, "stride_views"))[..., 0]
    assert out.shape == (2, 16 + 4 * (4 + 7 * 2))
    assert out[0, :16].tolist() == list(ids[0, 0].float())  # the global view first
    first_row = out[0, 16 : 16 + 18].long().tolist()
    assert first_row == [100, 101, 102, 103] + [v * 100 + c for v in range(2, 9) for c in (2, 3)]


def test_unknown_mode_names_valid_ones():
    with pytest.raises(ValueError, match="unknown stitching mode 'stride'.*concat"):
        plan_stitching(anyres_e2p(32), 4, 4, "stride")


@pytest.mark.parametrize(
    "strategy", ["resize", "e2p", "cubemap", "sliding_window", "anyres", "anyres_max", "anyres_e2p"]
)
def test_every_crop_strategy_stitches(strategy):
    from cora.config.sections.image import ImageProcessingConfig
    from cora.processors.views import plan_views

    views = plan_views(ImageProcessingConfig(crop_strategy=strategy, image_size=64))
    counts = {m: plan_stitching(views, 4, 4, m).num_tokens for m in ("stride_views", "unique", "concat")}
    assert counts["concat"] == 16 * len(views)
    assert 0 < counts["unique"] <= counts["stride_views"] <= counts["concat"]
    tokens = torch.randn(1, len(views), 16, 3)
    assert stitch(tokens, plan_stitching(views, 4, 4, "unique")).shape == (1, counts["unique"], 3)


def test_plan_views_default_gives_the_reference_count():
    from cora.config.sections.image import ImageProcessingConfig
    from cora.processors.views import plan_views

    assert plan_stitching(plan_views(ImageProcessingConfig()), 16, 16, "stride_views").num_tokens == 1408
