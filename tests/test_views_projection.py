"""Sampling views: orientation on the labelled cube, py360convert reference, seam, numpy vs torch, cache."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from cora.config.sections.image import ImageProcessingConfig
from cora.processors.geometry import global_view, perspective_view
from cora.processors.image_io import load_image
from cora.processors.projection import build_plan
from cora.processors.views import PanoramaViews, plan_views

FACE_COLOURS = {"+Z red": (255, 0, 0), "+X green": (115, 245, 30), "-Z blue": (30, 50, 255), "-X yellow": (255, 255, 0)}


def smooth_erp(width: int = 256, height: int = 128) -> np.ndarray:
    """A texture that is continuous across the ±180° seam (periodic in longitude)."""
    lon = (np.arange(width) + 0.5) / width * 2 * np.pi
    lat = (np.arange(height) + 0.5) / height * np.pi
    r = 128 + 100 * np.cos(lon)[None, :] * np.sin(lat)[:, None]
    g = 128 + 100 * np.sin(2 * lon)[None, :] * np.ones((height, 1))
    b = 128 + 100 * np.cos(lat)[:, None] * np.ones((1, width))
    return np.clip(np.stack([r, g, b], -1), 0, 255).round().astype(np.uint8)


def noisy_erp(width: int = 512, height: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def nearest_face(tile: np.ndarray) -> tuple[str, float]:
    """The face colour of a tile (median of its centre half, so the white label does not count)."""
    s = tile.shape[0]
    colour = np.median(tile[s // 4 : 3 * s // 4, s // 4 : 3 * s // 4].reshape(-1, 3), axis=0)
    dist = {k: float(np.linalg.norm(colour - np.array(c))) for k, c in FACE_COLOURS.items()}
    best = min(dist, key=dist.get)
    return best, dist[best]


@pytest.fixture(scope="module")
def cube(shared_data) -> np.ndarray:
    return load_image(shared_data / "panoramas" / "labelled-cube-1024x512.png")


@pytest.fixture(scope="module")
def lake_1024(shared_data) -> np.ndarray:
    lake = load_image(shared_data / "panoramas" / "lake-rocks-4096x2048.jpg", decode_min_width=1024)
    return cv2.resize(lake, (1024, 512), interpolation=cv2.INTER_AREA)


# -- orientation -----------------------------------------------------------------------------
def test_yaw_convention_on_the_labelled_cube(cube) -> None:
    views = PanoramaViews.from_config(ImageProcessingConfig(crop_strategy="cubemap", image_size=64))
    tiles = views.sample(cube)
    faces = [nearest_face(t) for t in tiles]
    assert [f for f, _ in faces] == ["+Z red", "+X green", "-Z blue", "-X yellow"]
    assert all(d < 40 for _, d in faces)
    # Yaw grows to the right: the right half of the yaw-45 tile is green (+X), its left half red (+Z).
    tile45 = PanoramaViews([perspective_view(45, 0, 90, 64)]).sample(cube)[0]
    assert nearest_face(np.repeat(tile45[:, 40:], 2, axis=1)[:, :64])[0] == "+X green"
    assert nearest_face(np.repeat(tile45[:, :24], 3, axis=1)[:, :64])[0] == "+Z red"


def test_up_and_down_faces_see_the_poles(cube) -> None:
    six = PanoramaViews.from_config(ImageProcessingConfig(crop_strategy="cubemap", cubemap_faces=6, image_size=32))
    tiles = six.sample(cube)
    top, bottom = np.median(cube[:40].reshape(-1, 3), axis=0), np.median(cube[-40:].reshape(-1, 3), axis=0)
    np.testing.assert_allclose(np.median(tiles[4].reshape(-1, 3), axis=0), top, atol=30)  # magenta sky
    np.testing.assert_allclose(np.median(tiles[5].reshape(-1, 3), axis=0), bottom, atol=30)  # cyan floor
    assert np.abs(top.astype(int) - bottom.astype(int)).max() > 100


def test_global_view_is_the_area_resized_erp(cube) -> None:
    views = PanoramaViews([global_view(64)])
    direct = cv2.resize(cube, (64, 64), interpolation=cv2.INTER_AREA).astype(int)
    # Sampled from the 2x-halved ERP (shared with other views): equal up to 8-bit rounding.
    assert np.abs(views.sample(cube)[0] - direct).max() <= 1


# -- reference -----------------------------------------------------------------------------
def py360_equivalent_fov(fov: float, size: int) -> float:
    """py360convert puts the first/last pixel *centres* on ±fov/2 (ours: pixel *edges*).

    Its e2p(fov) equals our perspective view of fov' with tan(fov'/2) = tan(fov/2)·S/(S-1).
    """
    return 2 * math.degrees(math.atan(math.tan(math.radians(fov / 2)) * size / (size - 1)))


@pytest.mark.parametrize(
    "yaw,pitch,fov", [(0, 0, 90), (45, 0, 90), (180, 0, 90), (315, 20, 90), (-100, -40, 60), (10, 75, 90)]
)
def test_matches_py360convert(lake_1024, yaw, pitch, fov) -> None:
    py360convert = pytest.importorskip("py360convert")
    erp = lake_1024
    size = 96
    # Same yaw sign (py360convert's u_deg, positive right, in [-180, 180]) and pitch sign (v_deg, up).
    ref = py360convert.e2p(erp, fov, ((yaw + 180) % 360) - 180, pitch, (size, size)).astype(np.float64)
    geom = perspective_view(yaw, pitch, py360_equivalent_fov(fov, size), size)
    ours = PanoramaViews([geom], erp_filter="remap").sample(erp)[0].astype(np.float64)
    diff = np.abs(ours - ref)[4:-4, 4:-4]
    assert diff.mean() <= 1.0 and np.percentile(diff, 99) <= 8


def test_area_filter_reduces_aliasing_on_a_dense_erp() -> None:
    """Against a 4x supersampled rendering, the area-filtered tile beats direct bilinear sampling."""
    rng = np.random.default_rng(1)
    erp = rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8)  # full-band texture: worst case for aliasing
    size = 64  # 90° in 64 px: the ERP is 2.5x denser than the tile centre
    geom = perspective_view(30, 10, 90, size)
    truth = PanoramaViews([perspective_view(30, 10, 90, 4 * size)], erp_filter="remap").sample(erp)[0]
    truth = cv2.resize(truth, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
    area = PanoramaViews([geom], erp_filter="area").sample(erp)[0]
    remap = PanoramaViews([geom], erp_filter="remap").sample(erp)[0]
    assert build_plan((geom,), 1024, 512, "area").groups[0].source != 0  # sampled from a halved ERP
    err_area, err_remap = np.abs(area - truth).mean(), np.abs(remap - truth).mean()
    assert err_area < 0.6 * err_remap


# -- seam, borders ---------------------------------------------------------------------------------
STRATEGIES = ["resize", "e2p", "cubemap", "sliding_window", "anyres", "anyres_max", "anyres_e2p"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_constant_erp_gives_constant_views_no_black_border(strategy) -> None:
    erp = np.full((128, 256, 3), (200, 120, 40), np.uint8)
    cfg = ImageProcessingConfig(crop_strategy=strategy, image_size=32, cubemap_faces=6)
    views = PanoramaViews.from_config(cfg)
    assert np.all(views.sample(erp) == (200, 120, 40))
    pixels = views(torch.from_numpy(erp).permute(2, 0, 1).float() / 255).pixels  # grid_sample path
    torch.testing.assert_close(pixels, torch.tensor([200, 120, 40]).view(1, 3, 1, 1).expand_as(pixels) / 255.0)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_seam_is_continuous(interpolation) -> None:
    erp = smooth_erp(512, 256)
    tile = PanoramaViews([perspective_view(180, 0, 90, 128)], interpolation=interpolation).sample(erp)[0]
    steps = np.abs(np.diff(tile.astype(np.int16), axis=1))[:, 60:68]  # the seam is at the centre column
    assert steps.max() <= 6
    # ... and the sliding window crop straddling the seam equals the ERP rolled by half a turn.
    crop = PanoramaViews(
        [global_view(64).__class__("crop", "erp", 180.0, 0.0, 360.0, 180.0, 512, 256)],
        erp_filter="remap",
        interpolation=interpolation,
    ).sample(erp)[0]
    # (bicubic keeps one row off each pole; rows 1..H-2 sit on pixel centres and are exact)
    np.testing.assert_array_equal(crop[1:-1], np.roll(erp, 256, axis=1)[1:-1])


@pytest.mark.parametrize("erp_filter", ["area", "remap"])
def test_tile_across_the_seam_equals_the_centre_tile_of_the_rolled_erp(erp_filter) -> None:
    """Yaw 180° straddles the seam; rolling the ERP half a turn brings it to the centre: same pixels."""
    erp = noisy_erp(1024, 512)
    views = PanoramaViews([perspective_view(180, 10, 90, 64), perspective_view(0, 10, 90, 64)], erp_filter=erp_filter)
    seam, _ = views.sample(erp)
    _, centre = views.sample(np.roll(erp, 512, axis=1))
    np.testing.assert_array_equal(seam, centre)
    tensor = views(torch.from_numpy(erp).permute(2, 0, 1).float() / 255).pixels
    rolled = views(torch.from_numpy(np.roll(erp, 512, axis=1)).permute(2, 0, 1).float() / 255).pixels
    torch.testing.assert_close(tensor[0], rolled[1], atol=1e-4, rtol=0)


# -- numpy vs torch, batching, inputs -----------------------------------------------------------
@pytest.mark.parametrize("strategy", ["anyres_e2p", "anyres", "sliding_window", "cubemap"])
def test_numpy_and_torch_paths_agree(strategy) -> None:
    erp = noisy_erp(512, 256)
    views = PanoramaViews.from_config(ImageProcessingConfig(crop_strategy=strategy, image_size=48, cubemap_faces=6))
    a = views(erp).pixels
    b = views(torch.from_numpy(erp).permute(2, 0, 1).float() / 255).pixels  # float tensor: grid_sample
    assert a.shape == b.shape == (len(views.geometries), 3, 48, 48)
    # cv2 uses 1/32-pixel fixed-point maps and 8-bit output; torch float grids.
    assert (a - b).abs().mean() < 0.6 / 255 and (a - b).abs().max() < 4 / 255


def test_batched_inputs_match_single_ones() -> None:
    erps = [noisy_erp(256, 128, seed=s) for s in range(3)]
    views = PanoramaViews.from_config(ImageProcessingConfig(image_size=32))
    single = torch.stack([views(e).pixels for e in erps])
    for batch in (views(erps).pixels, views(np.stack(erps)).pixels):
        assert batch.shape == (3, 9, 3, 32, 32)
        torch.testing.assert_close(batch, single)
    tensor = torch.from_numpy(np.stack(erps)).permute(0, 3, 1, 2)
    out = views(tensor)  # uint8 CPU tensor: the cv2 path, identical
    assert out.pixels.shape == (3, 9, 3, 32, 32) and out.geometries == views.geometries
    torch.testing.assert_close(out.pixels, single)
    floats = views(tensor.float() / 255).pixels  # grid_sample path, batched over panoramas
    assert floats.shape == (3, 9, 3, 32, 32) and (floats - single).abs().mean() < 0.6 / 255


def test_input_types_and_dtypes_give_the_same_views() -> None:
    from PIL import Image

    erp = noisy_erp(256, 128)
    views = PanoramaViews.from_config(ImageProcessingConfig(crop_strategy="cubemap", image_size=32))
    ref = views(erp).pixels
    assert ref.dtype == torch.float32 and ref.min() >= 0.0 and ref.max() <= 1.0
    variants = [
        Image.fromarray(erp),
        np.concatenate([erp, np.full((128, 256, 1), 7, np.uint8)], axis=2),  # RGBA: alpha dropped
        erp.astype(np.uint16) * 257,  # 16-bit
        erp.astype(np.float32) / 255.0,
    ]
    for v in variants:
        torch.testing.assert_close(views(v).pixels, ref)
    gray = views(erp[..., 0]).pixels
    torch.testing.assert_close(gray[:, 1], gray[:, 0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_is_sampled_on_the_gpu() -> None:
    erp = torch.from_numpy(noisy_erp(512, 256)).permute(2, 0, 1)
    views = PanoramaViews.from_config(ImageProcessingConfig(image_size=64))
    gpu = views(erp.cuda()).pixels
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), views(erp.float() / 255).pixels, atol=1e-4, rtol=0)
    assert (gpu.cpu() - views(erp).pixels).abs().mean() < 0.6 / 255


# -- cache ---------------------------------------------------------------------------------------
def test_sampling_plan_is_cached_per_geometry_and_size() -> None:
    geoms = tuple(plan_views(ImageProcessingConfig(image_size=24)))
    views = PanoramaViews(geoms)
    erp = noisy_erp(256, 128)
    views.sample(erp)
    before = build_plan.cache_info()
    views.sample(erp)
    PanoramaViews(list(geoms)).sample(erp)  # another instance, same geometries: same plan
    after = build_plan.cache_info()
    assert after.hits == before.hits + 2 and after.misses == before.misses
    views.sample(noisy_erp(512, 256))
    assert build_plan.cache_info().misses == after.misses + 1
    assert views.plan(256, 128) is views.plan(256, 128)


def test_plan_errors() -> None:
    with pytest.raises(ValueError, match="same size"):
        build_plan((perspective_view(0, 0, 90, 32), perspective_view(0, 0, 90, 16)), 256, 128)
    with pytest.raises(ValueError, match="'lanczos'.*bilinear"):
        build_plan((global_view(8),), 256, 128, "area", "lanczos")
    with pytest.raises(ValueError, match="plan was built for 256x128"):
        from cora.processors.projection import sample_numpy

        sample_numpy(noisy_erp(512, 256), build_plan((global_view(8),), 256, 128))
