"""Overlap losses, named in ``cora.registry.LOSSES``: ``build_loss(cfg)`` → ``loss(features, tile_geometries)``.

Every loss takes the projector output of the perspective tiles ``[B, T, H, W, D]`` and their
geometries, pairs the overlapping strips of adjacent tiles (:mod:`.strips`), computes in
fp32 and returns a scalar attached to the graph. Adding a loss = one file with a factory
``(LossConfig) -> loss`` + one line in ``cora.registry.LOSSES``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry
from cora.registry import LOSSES

LossFn = Callable[[torch.Tensor, list[ViewGeometry]], torch.Tensor]


def available_losses() -> list[str]:
    return LOSSES.names()


def build_loss(cfg: LossConfig) -> LossFn:
    """The loss named by ``cfg.type``; an unknown name lists the valid ones."""
    return LOSSES.load(cfg.type)(cfg)


__all__ = ["LossFn", "available_losses", "build_loss"]
