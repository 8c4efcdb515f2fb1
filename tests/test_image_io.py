"""load_image: every input kind, and a clear error naming the file for every bad one."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cora.config.sections.image import ImageProcessingConfig
from cora.processors.image_io import ImageError, check_aspect, load_image
from cora.processors.views import PanoramaViews


def erp(width: int = 64, height: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_png_round_trip_rgb_rgba_gray_16bit(tmp_path) -> None:
    img = erp()
    Image.fromarray(img).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), img)
    Image.fromarray(np.concatenate([img, np.full((32, 64, 1), 9, np.uint8)], 2)).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "rgba.png")), img)
    Image.fromarray(img[..., 1]).save(tmp_path / "gray.png")
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (32, 64, 3) and np.array_equal(gray[..., 0], img[..., 1])
    assert np.array_equal(gray[..., 2], gray[..., 0])
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(img.astype(np.uint16) * 257, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(load_image(tmp_path / "deep.png"), img)


def test_in_memory_inputs() -> None:
    img = erp()
    assert load_image(img) is not None and load_image(img).dtype == np.uint8
    np.testing.assert_array_equal(load_image(Image.fromarray(img)), img)
    np.testing.assert_array_equal(load_image(torch.from_numpy(img).permute(2, 0, 1)), img)
    np.testing.assert_array_equal(load_image(torch.from_numpy(img).permute(2, 0, 1).float() / 255), img)
    np.testing.assert_array_equal(load_image(cv2.imencode(".png", img[..., ::-1])[1].tobytes()), img)


def test_jpeg_decode_and_reduced_decode(tmp_path) -> None:
    img = cv2.resize(erp(64, 32), (512, 256), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "pano.jpg"
    Image.fromarray(img).save(path, quality=95)
    full = load_image(path)
    assert full.shape == (256, 512, 3) and np.abs(full.astype(int) - img).mean() < 3
    half = load_image(path, decode_min_width=200)  # 1/2 keeps ≥ 200 wide; 1/4 would be 128
    assert half.shape == (128, 256, 3)
    assert np.abs(half.astype(int) - cv2.resize(full, (256, 128), interpolation=cv2.INTER_AREA)).mean() < 3
    assert load_image(path, decode_min_width=10).shape == (32, 64, 3)  # 1/8 at most
    # Data after the end-of-image marker (e.g. a phone's motion-photo video) is not truncation.
    trailing = tmp_path / "motion.jpg"
    trailing.write_bytes(path.read_bytes() + b"ftypmp42" + bytes(100))
    np.testing.assert_array_equal(load_image(trailing), full)


def test_not_an_image_names_the_file(tmp_path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello, I am text")
    with pytest.raises(ImageError, match="notes.jpg: not a readable image"):
        load_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: empty file"):
        load_image(empty)
    with pytest.raises(ImageError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")


def test_truncated_jpeg_is_an_error_not_a_grey_tile(tmp_path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(erp(256, 128)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: not a readable image.*truncated"):
        load_image(path)
    png = tmp_path / "cut.png"
    Image.fromarray(erp(256, 128)).save(png)
    png.write_bytes(png.read_bytes()[:300])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(png)


def test_zero_size_and_bad_arrays() -> None:
    with pytest.raises(ImageError, match="zero-size"):
        load_image(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ImageError, match=r"shape \(4, 4, 5\)"):
        load_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((4, 8, 3), 2.0))
    with pytest.raises(ImageError, match="int64"):
        load_image(np.zeros((4, 8, 3), np.int64))


def test_aspect_policy_warns_or_errors(tmp_path, caplog) -> None:
    check_aspect(2048, 1024)
    check_aspect(2050, 1024)  # within 1 %
    with caplog.at_level(logging.WARNING):
        check_aspect(100, 100, "warn", "square.png")
    assert "square.png: 100x100 is not a 2:1" in caplog.text
    with pytest.raises(ImageError, match="square.png: 100x100 is not a 2:1.*aspect_policy"):
        check_aspect(100, 100, "error", "square.png")
    path = tmp_path / "square.png"
    Image.fromarray(erp(32, 32)).save(path)
    strict = PanoramaViews.from_config(ImageProcessingConfig(image_size=16, aspect_policy="error"))
    with pytest.raises(ImageError, match="square.png"):
        strict(path)
    with pytest.raises(ImageError, match="<tensor>: 32x32"):
        strict(torch.zeros(3, 32, 32))
    lenient = PanoramaViews.from_config(ImageProcessingConfig(image_size=16))
    assert lenient(path).pixels.shape == (9, 3, 16, 16)


def test_auto_decode_width_follows_the_views(tmp_path) -> None:
    cfg = ImageProcessingConfig(image_size=64, decode_min_width="auto")
    views = PanoramaViews.from_config(cfg)
    # 64-px tiles of 90°: focal 32 px/rad → an ERP 2π·32 ≈ 202 px wide is as dense as the tiles.
    assert views.decode_min_width == 202
    assert PanoramaViews.from_config(cfg.model_copy(update={"erp_filter": "remap"})).decode_min_width == 0
    path = tmp_path / "pano.jpg"
    Image.fromarray(cv2.resize(erp(64, 32), (1024, 512))).save(path)
    assert views.load(path).shape == (128, 256, 3)  # 1/4 scale is 256 ≥ 202 wide; 1/8 would be 128 < 202
    assert views(path).pixels.shape == (9, 3, 64, 64)


@pytest.mark.parametrize("mode, progressive", [("RGB", False), ("RGB", True), ("L", False), ("CMYK", False)])
def test_the_jpeg_decoder_agrees_with_pil(tmp_path, mode, progressive) -> None:
    """libjpeg-turbo (simplejpeg) where it takes the file, OpenCV where it declines (CMYK): both give PIL's
    pixels within JPEG's rounding, baseline and progressive, colour and grey."""
    img = cv2.resize(erp(64, 32), (512, 256), interpolation=cv2.INTER_CUBIC)
    pil = Image.fromarray(img).convert(mode)
    path = tmp_path / "pano.jpg"
    pil.save(path, quality=92, progressive=progressive)
    want = np.asarray(Image.open(path).convert("RGB")).astype(int)
    got = load_image(path).astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= (16 if mode == "CMYK" else 2), np.abs(got - want).max()
    assert np.abs(got - want).mean() < (2.0 if mode == "CMYK" else 0.5)


def test_the_default_views_decode_jpegs_reduced_to_the_width_they_need() -> None:
    views = PanoramaViews.from_config(ImageProcessingConfig())
    assert ImageProcessingConfig().decode_min_width == "auto" and views.decode_min_width == views.needed_width()
