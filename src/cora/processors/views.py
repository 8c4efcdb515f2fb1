"""Panorama → views: the geometry plan of a crop strategy and the fast, cached sampler.

Convention (see :mod:`cora.processors.geometry`): yaw 0° looks at the ERP's centre
column and grows to the right; pitch is positive up. On the labelled test cube
(``labelled-cube-1024x512.png``) yaw 0° shows the red "+Z" face, 90° green "+X",
180° blue "-Z", 270° yellow "-X". This is py360convert's ``e2p(u_deg, v_deg)`` convention
too (same yaw sign, pixel centres at +0.5).

>>> views = PanoramaViews.from_config(cfg.image_processing)
>>> batch = views("pano.jpg")          # ViewBatch: pixels [V, 3, S, S] float in [0, 1]
>>> batch.geometries[1].yaw_deg        # 0.0: the first tile after the global view
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from cora.config.sections.image import ImageProcessingConfig
from cora.processors.geometry import ViewGeometry, global_view
from cora.processors.image_io import ImageError, check_aspect, load_image, to_rgb_uint8
from cora.processors.projection import SamplingPlan, build_plan, density_size, sample_numpy, sample_torch
from cora.processors.strategies import WITH_GLOBAL, get_strategy


def plan_views(cfg: ImageProcessingConfig) -> list[ViewGeometry]:
    """The views of ``cfg.crop_strategy``: global first (anyres strategies, ``include_global``), index = position."""
    views = get_strategy(cfg.crop_strategy)(cfg)
    if cfg.include_global and cfg.crop_strategy in WITH_GLOBAL:
        views = [global_view(cfg.image_size), *views]
    return [replace(g, index=i) for i, g in enumerate(views)]


@dataclass
class ViewBatch:
    """Views of one panorama (``pixels [V, 3, S, S]``) or of a batch (``[B, V, 3, S, S]``), float in [0, 1]."""

    pixels: torch.Tensor
    geometries: list[ViewGeometry]


def _is_tensor(image: Any) -> bool:
    return isinstance(image, torch.Tensor)


class PanoramaViews:
    """Callable ``views(image) -> ViewBatch`` for a fixed list of geometries.

    Accepts a path, bytes, PIL image, numpy ``[H, W, C]`` (uint8/uint16/float/bool, 1-4
    channels), a numpy batch ``[B, H, W, C]``, a list of any of these (→ batch), or a torch
    tensor ``[C, H, W]`` / ``[B, C, H, W]`` (uint8 or float in [0, 1], CPU or CUDA: float and
    CUDA tensors are sampled on their device with ``grid_sample``). Everything else is
    sampled with ``cv2.remap``.
    """

    def __init__(
        self,
        geometries: Sequence[ViewGeometry],
        interpolation: str = "bilinear",
        erp_filter: str = "area",
        aspect_policy: str = "warn",
        decode_min_width: int | str = 0,
    ) -> None:
        self.geometries = list(geometries)
        self._key = tuple(self.geometries)
        self.interpolation = interpolation
        self.erp_filter = erp_filter
        self.aspect_policy = aspect_policy
        self.decode_min_width = self.needed_width() if decode_min_width == "auto" else int(decode_min_width)

    @classmethod
    def from_config(cls, cfg: ImageProcessingConfig) -> PanoramaViews:
        return cls(plan_views(cfg), cfg.interpolation, cfg.erp_filter, cfg.aspect_policy, cfg.decode_min_width)

    def needed_width(self) -> int:
        """The narrowest ERP the views can be sampled from without losing detail (0 = full size).

        With the area filter, a wider ERP is averaged down to this anyway, so a JPEG can be
        decoded at a reduced scale (:func:`~cora.processors.image_io.load_image`).
        """
        if self.erp_filter != "area":
            return 0
        return max(math.ceil(density_size(g)[0]) for g in self.geometries)

    def plan(self, width: int, height: int) -> SamplingPlan:
        """The cached :class:`~cora.processors.projection.SamplingPlan` for a ``width × height`` ERP."""
        return build_plan(self._key, width, height, self.erp_filter, self.interpolation)

    # -- numpy path ------------------------------------------------------------------------
    def load(self, image: Any) -> np.ndarray:
        """Any single non-tensor input → checked ``[H, W, 3]`` uint8."""
        array = load_image(image, decode_min_width=self.decode_min_width)
        name = str(image) if isinstance(image, (str, os.PathLike)) else "<array>"
        check_aspect(array.shape[1], array.shape[0], self.aspect_policy, name)
        return array

    def sample(self, erp: np.ndarray) -> np.ndarray:
        """One checked ``[H, W, 3]`` uint8 ERP → ``[V, S, S, 3]`` uint8 (one remap per source)."""
        return sample_numpy(erp, self.plan(erp.shape[1], erp.shape[0]))

    # -- torch path ------------------------------------------------------------------------
    def sample_tensor(self, erp: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` (uint8 or float in [0, 1], any device) → ``[B, V, 3, S, S]`` float32.

        Float or CUDA tensors go through ``grid_sample`` on their device; uint8 CPU tensors take
        the cv2 path (same views, several times faster than float sampling on a CPU).
        """
        if erp.ndim != 4 or erp.shape[1] not in (1, 3, 4):
            raise ImageError(f"<tensor>: expected [C, H, W] or [B, C, H, W] with C in 1, 3, 4; got {tuple(erp.shape)}")
        height, width = erp.shape[-2:]
        check_aspect(width, height, self.aspect_policy, "<tensor>")
        if erp.dtype == torch.uint8 and erp.device.type == "cpu":
            return torch.stack(
                [to_float(self.sample(to_rgb_uint8(e.permute(1, 2, 0).numpy(), "<tensor>"))) for e in erp]
            )
        if erp.dtype == torch.uint8:
            erp = erp.float().div_(255.0)
        elif not erp.is_floating_point():
            raise ImageError(f"<tensor>: unsupported dtype {erp.dtype} (use uint8 or float in [0, 1])")
        erp = erp.float()
        if erp.shape[1] == 4:
            erp = erp[:, :3]
        elif erp.shape[1] == 1:
            erp = erp.expand(-1, 3, -1, -1)
        return sample_torch(erp.contiguous(), self.plan(width, height))

    def __call__(self, image: Any) -> ViewBatch:
        if _is_tensor(image):
            pixels = self.sample_tensor(image if image.ndim == 4 else image.unsqueeze(0))
            return ViewBatch(pixels if image.ndim == 4 else pixels[0], self.geometries)
        if isinstance(image, np.ndarray) and image.ndim == 4:
            image = list(image)
        if isinstance(image, (list, tuple)):
            if not image:
                raise ImageError("<batch>: empty list of panoramas")
            return ViewBatch(torch.stack([self._one(im) for im in image]), self.geometries)
        return ViewBatch(self._one(image), self.geometries)

    def _one(self, image: Any) -> torch.Tensor:
        if _is_tensor(image):
            return self.sample_tensor(image.unsqueeze(0))[0]
        return to_float(self.sample(self.load(image)))


def to_float(views: np.ndarray) -> torch.Tensor:
    """``[V, S, S, 3]`` uint8 → ``[V, 3, S, S]`` float32 in [0, 1] (numpy's transposing cast is the fastest here)."""
    return torch.from_numpy(views.transpose(0, 3, 1, 2).astype(np.float32, order="C")).mul_(1.0 / 255.0)
