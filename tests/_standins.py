"""STAND-INS — delete after merging main once ``cora.processors.views`` and
``cora.processors.text`` have landed (the data tests then use the real modules).

A tiny views callable (global view + perspective tiles sampled from the ERP with the
geometry contract and ``grid_sample``) and a minimal ChatML formatter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cora.processors.geometry import ViewGeometry, erp_lonlat_to_pixel, global_view, perspective_view


@dataclass
class ViewBatch:
    pixels: torch.Tensor  # [V, 3, S, S]
    geometries: list[ViewGeometry]


class StandinViews:
    def __init__(self, size: int = 16, tiles: int = 8, fov: float = 90.0) -> None:
        self.geometries = [global_view(size, 0)] + [
            perspective_view(360.0 * i / tiles, 0.0, fov, size, i + 1) for i in range(tiles)]

    def __call__(self, image: np.ndarray) -> ViewBatch:
        h, w = image.shape[:2]
        erp = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255.0
        erp = torch.cat([erp[..., -1:], erp, erp[..., :1]], dim=-1)  # wrap one column each side
        views = []
        for geo in self.geometries:
            lon, lat = geo.pixel_lonlat()
            x, y = erp_lonlat_to_pixel(lon, lat, w, h)
            gx = (x + 1.0 + 0.5) / (w + 2) * 2 - 1
            gy = (y + 0.5) / h * 2 - 1
            grid = torch.from_numpy(np.stack([gx, gy], -1)).float()[None]
            views.append(F.grid_sample(erp, grid, mode="bilinear", padding_mode="border", align_corners=False)[0])
        return ViewBatch(torch.stack(views).clamp(0, 1), list(self.geometries))


class StandinFormatter:
    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer

    def encode_train(self, query: str, answer: str) -> dict[str, list[int]]:
        prompt = self.tok.encode(f"<|im_start|>user\n<|vision|>\n{query}<|im_end|>\n<|im_start|>assistant\n",
                                 add_special_tokens=False)
        reply = self.tok.encode(f"{answer}<|im_end|>", add_special_tokens=False)
        return {"input_ids": prompt + reply, "labels": [-100] * len(prompt) + reply}
