"""Input modes: how a panorama is shown to an off-the-shelf VLM.

``native``      the ERP as one image (resized to ``2h × h``; the family's processor then applies its own
                resizing/tiling, e.g. Qwen's dynamic resolution or InternVL's tiles + thumbnail)
``resize``      the ERP resized to one ``image_size`` square
``cubemap``     the 4 horizontal cube faces, a multi-image turn
``anyres_e2p``  CORA's views (global + overlapping perspective tiles), a multi-image turn

Pixels travel as the project's ``[V, 3, H, W]`` floats in [0, 1] (:meth:`PanoramaInputs.view_batch`); the
family processor gets them back as uint8 images (:func:`panorama_from_pixels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

import cv2
import numpy as np
import torch

from cora.config.schema import ImageProcessingConfig
from cora.config.sections.adapt import InputMode
from cora.processors.geometry import ViewGeometry
from cora.processors.image_io import load_image
from cora.processors.views import PanoramaViews, ViewBatch

INPUT_MODES: tuple[str, ...] = get_args(InputMode)
MULTI_IMAGE_MODES = ("cubemap", "anyres_e2p")


@dataclass
class PanoramaInput:
    """The images of one panorama (``[H, W, 3]`` uint8 each) and where each looks."""

    images: list[np.ndarray]
    geometries: list[ViewGeometry]


def native_geometry(width: int, height: int) -> ViewGeometry:
    return ViewGeometry("global", "erp", 0.0, 0.0, 360.0, 180.0, width, height, 0)


def panorama_from_pixels(pixels: torch.Tensor, geometries: list[ViewGeometry]) -> PanoramaInput:
    """``[V, 3, H, W]`` floats in [0, 1] → uint8 images for the family processor."""
    images = (pixels.detach().float().clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return PanoramaInput(list(images), list(geometries))


class PanoramaInputs:
    """``PanoramaInputs(mode, image_cfg)(image) -> PanoramaInput``; ``.view_batch(image) -> ViewBatch``."""

    def __init__(self, mode: str, image_cfg: ImageProcessingConfig, native_height: int = 448) -> None:
        if mode not in INPUT_MODES:
            raise ValueError(f"adapt.input_mode {mode!r} is unknown; valid: {', '.join(INPUT_MODES)}")
        self.mode = mode
        self.native_height = native_height
        self.aspect_policy = image_cfg.aspect_policy
        self.views = (
            None
            if mode == "native"
            else PanoramaViews.from_config(image_cfg.model_copy(update={"crop_strategy": mode}))
        )

    @property
    def multi_image(self) -> bool:
        return self.mode in MULTI_IMAGE_MODES

    def view_batch(self, image: Any) -> ViewBatch:
        """Pixels ``[V, 3, H, W]`` in [0, 1] and geometries of one panorama (path, array, PIL, bytes)."""
        if self.views is not None:
            return self.views(image)
        erp = load_image(image, aspect_policy=self.aspect_policy)
        size = (2 * self.native_height, self.native_height)
        resized = cv2.resize(erp, size, interpolation=cv2.INTER_AREA)
        pixels = torch.from_numpy(resized).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
        return ViewBatch(pixels, [native_geometry(*size)])

    def __call__(self, image: Any) -> PanoramaInput:
        batch = self.view_batch(image)
        return panorama_from_pixels(batch.pixels, batch.geometries)
