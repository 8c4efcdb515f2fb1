"""Stand-in for ``cora.processors.views`` until the views helper's module is on main (then delete this file).

Same contract, only the strategies the adapt input modes use (``resize``, ``cubemap``,
``anyres_e2p``): ``PanoramaViews.from_config(cfg)(erp) -> ViewBatch(pixels [V, 3, S, S] in [0, 1], geometries)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from cora.config.schema import ImageProcessingConfig
from cora.processors.geometry import ViewGeometry, erp_lonlat_to_pixel, global_view, perspective_view


@dataclass
class ViewBatch:
    pixels: torch.Tensor
    geometries: list[ViewGeometry]


def plan_views(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    size, views = cfg.image_size, []
    if cfg.crop_strategy == "resize":
        return [global_view(size)]
    if cfg.crop_strategy == "cubemap":
        return [perspective_view(yaw, 0.0, 90.0, size, i) for i, yaw in enumerate((0.0, 90.0, 180.0, 270.0))]
    if cfg.crop_strategy != "anyres_e2p":
        raise ValueError(f"the views stand-in has no strategy {cfg.crop_strategy!r}")
    if cfg.include_global:
        views.append(global_view(size))
    step = cfg.fov_deg * (1.0 - cfg.overlap_ratio)
    n_yaw = max(1, round(360.0 / step))
    pitches = [cfg.pitch_min_deg] if cfg.pitch_max_deg == cfg.pitch_min_deg else [cfg.pitch_min_deg, cfg.pitch_max_deg]
    for pitch in pitches:
        for k in range(n_yaw):
            views.append(perspective_view(k * 360.0 / n_yaw, pitch, cfg.fov_deg, size, len(views)))
    return views


def render_view(erp: np.ndarray, geom: ViewGeometry) -> np.ndarray:
    """``[S, S, 3]`` uint8 view of the ``[H, W, 3]`` uint8 ERP."""
    if geom.projection == "erp" and geom.hfov_deg == 360.0:
        return cv2.resize(erp, (geom.width, geom.height), interpolation=cv2.INTER_AREA)
    height, width = erp.shape[:2]
    lon, lat = geom.pixel_lonlat()
    x, y = erp_lonlat_to_pixel(lon, lat, width, height)
    padded = np.concatenate([erp, erp[:, :1]], axis=1)  # bilinear across the seam
    return cv2.remap(padded, (x % width).astype(np.float32), np.clip(y, 0, height - 1).astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class PanoramaViews:
    def __init__(self, geometries: list[ViewGeometry]) -> None:
        self.geometries = geometries

    @classmethod
    def from_config(cls, cfg: ImageProcessingConfig) -> PanoramaViews:
        return cls(plan_views(cfg))

    def __call__(self, erp: np.ndarray) -> ViewBatch:
        views = np.stack([render_view(erp, g) for g in self.geometries])
        pixels = torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255.0
        return ViewBatch(pixels, list(self.geometries))
