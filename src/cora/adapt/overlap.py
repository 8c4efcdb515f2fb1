"""The overlap loss on an off-the-shelf VLM's own vision features.

The family gives each image's aligner output on its token grid ``[h, w, D]``; the tiles of each
sample are stacked to ``[B, T, h, w, D]`` and handed to the project's overlap-loss registry
(VICReg batch-/pair-wise, DenseCL, …), which pairs adjacent tiles' overlap strips from geometry.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry
from cora.training.losses import build_loss

OverlapFn = Callable[[list[torch.Tensor], list[list[ViewGeometry]]], torch.Tensor]


def stack_tiles(
    grids: list[torch.Tensor], geometries: list[list[ViewGeometry]]
) -> tuple[torch.Tensor, list[ViewGeometry]]:
    """Per-image grids (all images of the batch in order) → tiles ``[B, T, h, w, D]`` and the tiles' geometries.

    Every sample must show the same tile layout (one input mode per run).
    """
    per_sample, start = [], 0
    tile_geoms: list[ViewGeometry] | None = None
    for b, geoms in enumerate(geometries):
        keep = [i for i, g in enumerate(geoms) if g.projection == "perspective"]
        if tile_geoms is None:
            tile_geoms = [geoms[i] for i in keep]
        elif [geoms[i] for i in keep] != tile_geoms:
            raise ValueError(f"sample {b}: tile geometries differ from sample 0's; one view layout per batch")
        per_sample.append(torch.stack([grids[start + i] for i in keep]) if keep else None)
        start += len(geoms)
    if start != len(grids):
        raise ValueError(f"{len(grids)} feature grids for {start} images")
    if not tile_geoms:
        raise ValueError(
            "the overlap loss needs perspective tiles; this input mode has none (use input_mode anyres_e2p)"
        )
    return torch.stack(per_sample), tile_geoms


def build_overlap_loss(cfg: LossConfig) -> OverlapFn:
    loss = build_loss(cfg)

    def overlap(grids: list[torch.Tensor], geometries: list[list[ViewGeometry]]) -> torch.Tensor:
        tiles, tile_geoms = stack_tiles(grids, geometries)
        return loss(tiles, tile_geoms)

    return overlap
