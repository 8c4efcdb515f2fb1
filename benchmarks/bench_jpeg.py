"""JPEG decoding of panoramas: libjpeg-turbo through simplejpeg vs OpenCV vs PIL, full size and reduced.

    PYTHONPATH=src python benchmarks/bench_jpeg.py [--repeats 5]

For 2K, 4K and 8K equirectangular JPEGs (q90, 4:2:0), baseline and progressive (written by PIL), it
times, interleaved: PIL full decode, OpenCV full decode, OpenCV reduced (``IMREAD_REDUCED_COLOR_N``,
the largest 1/2-1/4-1/8 keeping the width the default views need), simplejpeg full and with
``min_width`` (libjpeg-turbo's DCT scaling), and ``load_image`` as the project calls it (full, and
``decode_min_width`` = what the default views need: 256-px tiles of 90° → a 1024-px-wide ERP).
``default_speedup``: the default decode before (OpenCV at full size) over the default now (``load_image``
at the views' width). Writes benchmarks/results/jpeg.json. Run it alone.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cora.config.sections.image import ImageProcessingConfig  # noqa: E402
from cora.processors.image_io import _jpeg_reduction, load_image  # noqa: E402
from cora.processors.views import PanoramaViews  # noqa: E402
from cora.utils.io import atomic_write_json  # noqa: E402

SIZES = [2048, 4096, 8192]


def _panorama(width: int) -> np.ndarray:
    """A photo-like ERP: smooth colour fields plus fine texture (JPEG sizes like a real photo's)."""
    rng = np.random.default_rng(width)
    coarse = (rng.random((width // 64, width // 32, 3)) * 255).astype(np.uint8)
    image = cv2.resize(coarse, (width, width // 2), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, progressive: bool) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG", quality=90, progressive=progressive, subsampling=2)
    return out.getvalue()


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ways(data: bytes, need: int) -> dict:
    import simplejpeg

    buf = np.frombuffer(data, np.uint8)
    reduction = _jpeg_reduction(data, need)  # what the OpenCV path of load_image picks
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[reduction]  # fmt: skip
    return {
        "pil_full": lambda: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
        "cv2_full": lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR),
        "cv2_reduced": lambda: cv2.imdecode(buf, flag),
        "simplejpeg_full": lambda: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        "simplejpeg_reduced": lambda: simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=need),
        "load_image_full": lambda: load_image(data),
        "load_image_auto": lambda: load_image(data, decode_min_width=need),
    }


def main() -> int:
    import simplejpeg

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "jpeg.json"))
    args = parser.parse_args()
    need = PanoramaViews.from_config(ImageProcessingConfig()).needed_width()
    rows = []
    for width in SIZES:
        image = _panorama(width)
        for progressive in (False, True):
            data = _jpeg(image, progressive)
            ways = _ways(data, need)
            times = {k: [] for k in ways}
            for _ in range(args.repeats):
                for name, fn in ways.items():  # interleaved
                    times[name].append(_time(fn, 1))
            ms = {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()}
            row = {"erp": f"{width}x{width // 2}", "progressive": progressive, "bytes": len(data),
                   "views_need_width": need, "ms": ms,
                   "vs_pil_full": {k: round(ms["pil_full"] / v, 2) for k, v in ms.items()},
                   # the default decode before (OpenCV, full size) → now (libjpeg-turbo, reduced to the views)
                   "default_speedup": round(ms["cv2_full"] / ms["load_image_auto"], 2)}  # fmt: skip
            rows.append(row)
            kind = "progressive" if progressive else "baseline"
            print(f"{row['erp']:10} {kind:11} " + "  ".join(f"{k} {v}ms" for k, v in ms.items()))
    note = f"{platform.processor() or platform.machine()}, cpus {os.cpu_count()}, simplejpeg {simplejpeg.__version__}"
    atomic_write_json(args.out, {"rows": rows, "note": note})
    return 0


if __name__ == "__main__":
    sys.exit(main())
