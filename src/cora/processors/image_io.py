"""Reading panoramas: any file, array, PIL image or tensor → ``[H, W, 3]`` uint8 RGB.

Every failure is an :class:`ImageError` naming the file: unreadable or truncated files,
zero-size images and (per ``aspect_policy``) non-2:1 images. A bad image never becomes a
silent black tile.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import simplejpeg

logger = logging.getLogger(__name__)


ASPECT_TOLERANCE = 0.01  # relative: 2048×1024 ± 1 %
JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# OpenCV >= 4.10 decodes straight to RGB (saves a full-image BGR→RGB pass); older ones give BGR.
_RGB_FLAG = getattr(cv2, "IMREAD_COLOR_RGB", None)


class ImageError(ValueError):
    """An image that cannot be used; the message names the file (or ``<array>``)."""


def check_aspect(width: int, height: int, policy: str = "warn", name: str = "<array>") -> None:
    """Warn (``policy="warn"``) or raise :class:`ImageError` (``"error"``) unless width:height is 2:1."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: zero-size image ({width}x{height})")
    if abs(width / height - 2.0) <= 2.0 * ASPECT_TOLERANCE:
        return
    message = f"{name}: {width}x{height} is not a 2:1 equirectangular panorama (aspect {width / height:.3f})"
    if policy == "error":
        raise ImageError(message + "; set image_processing.aspect_policy: warn to accept it")
    if policy != "warn":
        raise ValueError(f"unknown aspect_policy {policy!r}; valid: warn, error")
    logger.warning("%s; views assume 2:1 and will be stretched", message)


def to_rgb_uint8(array: np.ndarray, name: str = "<array>") -> np.ndarray:
    """``[H, W]``, ``[H, W, 1|2|3|4]`` of uint8/uint16/bool/float ([0, 1]) → contiguous ``[H, W, 3]`` uint8.

    Alpha is dropped (panoramas are opaque); 16-bit values are rounded to 8 bits.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[..., : array.shape[2] - 1]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ImageError(f"{name}: expected an [H, W] or [H, W, 1-4] image, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{name}: zero-size image ({array.shape[1]}x{array.shape[0]})")
    if array.dtype == np.uint16:
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ImageError(f"{name}: float images must hold values in [0, 1]")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported pixel type {array.dtype} (use uint8, uint16, bool or float in [0, 1])")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array)


def _jpeg_complete(data: bytes) -> bool:
    # A JPEG ends with the EOI marker (some writers pad with zeros or newlines after it).
    return data[-4096:].rstrip(b"\x00\r\n ").endswith(JPEG_EOI)


def _decode_jpeg(buf: np.ndarray, reduction: int) -> np.ndarray | None:
    flag = _REDUCED[reduction]
    if _RGB_FLAG is not None:
        return cv2.imdecode(buf, (flag & ~cv2.IMREAD_COLOR) | _RGB_FLAG)
    bgr = cv2.imdecode(buf, flag)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _turbo_decode(data: bytes, min_width: int) -> np.ndarray | None:
    """libjpeg-turbo through ``simplejpeg``: the fastest decoder here (full size 1.1-1.5× OpenCV's,
    ``benchmarks/results/jpeg.json``), scaled down in the DCT to the smallest size at least ``min_width``
    wide. ``None`` where it declines the file (CMYK, unusual sampling): OpenCV then."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=max(0, min_width))
    except ValueError:
        return None


def _pil_decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return to_rgb_uint8(np.asarray(img).astype(np.uint16), name)
            return to_rgb_uint8(np.asarray(img.convert("RGBA" if "A" in img.mode else "RGB")), name)
    except ImageError:
        raise
    except Exception as exc:  # PIL raises many types for bad data
        raise ImageError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from exc


def _jpeg_reduction(data: bytes, min_width: int) -> int:
    """Largest libjpeg DCT scale-down (1, 2, 4, 8) keeping the decoded width ≥ ``min_width``."""
    if min_width <= 0:
        return 1
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:  # header only
        width = img.size[0]
    return max((r for r in _REDUCED if -(-width // r) >= min_width), default=1)


def decode_image(data: bytes, name: str = "<bytes>", decode_min_width: int = 0) -> np.ndarray:
    """Encoded image bytes → ``[H, W, 3]`` uint8 RGB (see :func:`load_image`)."""
    if not data:
        raise ImageError(f"{name}: empty file")
    buf = np.frombuffer(data, dtype=np.uint8)
    if data.startswith(JPEG_MAGIC):
        if not _jpeg_complete(data):
            # Possibly truncated (or a file with data after the image): let PIL decide strictly.
            _pil_decode(data, name)
        rgb = _turbo_decode(data, decode_min_width)
        if rgb is None:
            rgb = _decode_jpeg(buf, _jpeg_reduction(data, decode_min_width))
        if rgb is None:
            return _pil_decode(data, name)
        return to_rgb_uint8(rgb, name)
    try:
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        decoded = None
    if decoded is None:
        return _pil_decode(data, name)  # formats cv2 lacks; raises ImageError on garbage
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    elif decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    return to_rgb_uint8(decoded, name)


def load_image(image: Any, decode_min_width: int = 0, aspect_policy: str | None = None) -> np.ndarray:
    """A path, bytes, numpy array, PIL image or torch tensor → ``[H, W, 3]`` uint8 RGB.

    Arrays are ``[H, W]`` or ``[H, W, C]`` (channels last); tensors ``[C, H, W]`` (channels
    first, uint8 or float in [0, 1]). ``decode_min_width`` lets big JPEGs decode at 1/2, 1/4 or
    1/8 scale. ``aspect_policy`` (``warn``/``error``) checks the 2:1 ratio; None skips it.
    Raises :class:`ImageError` naming the file for anything unusable.
    """
    name = "<array>"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        name = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read ({exc})") from exc
        array = decode_image(data, name, decode_min_width)
    elif isinstance(image, (bytes, bytearray)):
        array = decode_image(bytes(image), "<bytes>", decode_min_width)
    elif type(image).__module__.startswith("PIL."):
        name = getattr(image, "filename", "") or "<PIL image>"
        mode = image.mode
        if mode.startswith("I;16") or mode == "I":
            array = to_rgb_uint8(np.asarray(image).astype(np.uint16), name)
        else:
            array = to_rgb_uint8(np.asarray(image.convert("RGBA" if "A" in mode else "RGB")), name)
    elif type(image).__module__.startswith("torch"):
        name = "<tensor>"
        tensor = image.detach().cpu()
        if tensor.ndim != 3:
            raise ImageError(f"{name}: expected a [C, H, W] tensor, got shape {tuple(tensor.shape)}")
        array = to_rgb_uint8(tensor.permute(1, 2, 0).numpy(), name)
    else:
        array = to_rgb_uint8(image, name)
    if aspect_policy is not None:
        check_aspect(array.shape[1], array.shape[0], aspect_policy, name)
    return array
