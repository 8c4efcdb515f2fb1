from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cora.config.base import StrictModel, registered
from cora.registry import CROP_STRATEGIES

CropStrategy = registered(CROP_STRATEGIES)


class ImageProcessingConfig(StrictModel):
    """How an ERP panorama becomes views (docs/ARCHITECTURE.md, "Views")."""

    crop_strategy: CropStrategy = "anyres_e2p"
    image_size: int = Field(256, ge=8, description="side of every square view, pixels")
    fov_deg: float = Field(90.0, gt=0.0, lt=180.0, description="horizontal FOV of perspective tiles")
    overlap_ratio: float = Field(0.5, ge=0.0, lt=1.0, description="overlap of adjacent views")
    pitch_min_deg: float = Field(0.0, ge=-90.0, le=90.0)
    pitch_max_deg: float = Field(0.0, ge=-90.0, le=90.0)
    include_global: bool = True
    cubemap_faces: Literal[4, 6] = 4
    anyres_grid: tuple[int, int] = Field((2, 4), description="rows, cols of ERP patches (anyres)")
    anyres_max_patches: int = Field(12, ge=1, description="patch budget (anyres_max)")
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    aspect_policy: Literal["warn", "error"] = Field("warn", description="on a non-2:1 input")
    use_vision_processor: bool = True
    window_deg: float = Field(
        180.0,
        gt=0.0,
        le=360.0,
        description="sliding_window: width of each ERP crop in degrees (full 180° height; 180 = square crops)",
    )
    erp_filter: Literal["area", "remap"] = Field(
        "area",
        description="area: average a large ERP down to the views' sampling density before remapping (no "
        "aliasing); remap: sample the full-resolution ERP directly (py360convert-like, aliases when "
        "the ERP is much denser than the views)",
    )
    decode_min_width: int | Literal["auto"] = Field(
        "auto",
        description="JPEG decode shortcut: decode at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling, faster) when "
        "the result stays at least this wide; 0 = always full size; auto = as wide as the views need "
        "(with erp_filter: area; full size with remap)",
    )

    @model_validator(mode="after")
    def _checks(self) -> ImageProcessingConfig:
        if isinstance(self.decode_min_width, int) and self.decode_min_width < 0:
            raise ValueError(f"decode_min_width must be >= 0 or 'auto', got {self.decode_min_width}")
        if self.pitch_min_deg > self.pitch_max_deg:
            raise ValueError(f"pitch_min_deg ({self.pitch_min_deg}) is above pitch_max_deg ({self.pitch_max_deg})")
        return self
