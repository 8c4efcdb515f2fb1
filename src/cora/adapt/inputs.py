"""Input modes: how a panorama is shown to an off-the-shelf VLM (SPEC §9).

``native``      the ERP as one image (the family's processor applies its own resizing/tiling)
``resize``      the ERP resized to one ``image_size`` square
``cubemap``     the 4 horizontal cube faces, a multi-image turn
``anyres_e2p``  CORA's views (global + overlapping perspective tiles), a multi-image turn
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from cora.config.schema import ImageProcessingConfig
from cora.processors.geometry import ViewGeometry

try:  # the views helper's module; the local stand-in serves until it is on main
    from cora.processors.views import PanoramaViews
except ImportError:  # pragma: no cover - depends on the merge state
    from cora.adapt._views_standin import PanoramaViews

InputMode = Literal["native", "resize", "cubemap", "anyres_e2p"]
INPUT_MODES: tuple[str, ...] = ("native", "resize", "cubemap", "anyres_e2p")
MULTI_IMAGE_MODES = ("cubemap", "anyres_e2p")


@dataclass
class PanoramaInput:
    """The images of one panorama (``[H, W, 3]`` uint8 each) and where each looks."""

    images: list[np.ndarray]
    geometries: list[ViewGeometry]


def native_geometry(erp: np.ndarray) -> ViewGeometry:
    height, width = erp.shape[:2]
    return ViewGeometry("global", "erp", 0.0, 0.0, 360.0, 180.0, width, height, 0)


class PanoramaInputs:
    """``PanoramaInputs(mode, image_cfg)(erp) -> PanoramaInput``."""

    def __init__(self, mode: str, image_cfg: ImageProcessingConfig) -> None:
        if mode not in INPUT_MODES:
            raise ValueError(f"adapt.input_mode {mode!r} is unknown; valid: {', '.join(INPUT_MODES)}")
        self.mode = mode
        self.views = None if mode == "native" else PanoramaViews.from_config(
            image_cfg.model_copy(update={"crop_strategy": mode}))

    @property
    def multi_image(self) -> bool:
        return self.mode in MULTI_IMAGE_MODES

    def __call__(self, erp: np.ndarray) -> PanoramaInput:
        if erp.ndim != 3 or erp.shape[2] != 3 or erp.dtype != np.uint8:
            raise ValueError(f"expected an [H, W, 3] uint8 ERP, got {erp.dtype} {tuple(erp.shape)}")
        if self.views is None:
            return PanoramaInput([erp], [native_geometry(erp)])
        batch = self.views(erp)
        pixels = (batch.pixels.clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).numpy()
        return PanoramaInput(list(pixels), list(batch.geometries))
