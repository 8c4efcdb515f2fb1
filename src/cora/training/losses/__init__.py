"""Overlap losses (SPEC §4), a registry: ``build_loss(cfg)`` → ``loss(features, tile_geometries)``.

Every loss takes the projector output of the perspective tiles ``[B, T, H, W, D]`` and their
geometries, pairs the overlapping strips of adjacent tiles (:mod:`.strips`), computes in
fp32 and returns a scalar attached to the graph. Adding a loss = one file with a
``@register("name")`` function + one import line below.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cora.config.sections.training import LossConfig
from cora.processors.geometry import ViewGeometry

LossFn = Callable[[torch.Tensor, list[ViewGeometry]], torch.Tensor]
_REGISTRY: dict[str, Callable[[LossConfig], LossFn]] = {}


def register(name: str) -> Callable[[Callable[[LossConfig], LossFn]], Callable[[LossConfig], LossFn]]:
    """Register a factory ``(LossConfig) -> loss`` under ``name``."""

    def deco(factory: Callable[[LossConfig], LossFn]) -> Callable[[LossConfig], LossFn]:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_losses() -> list[str]:
    return sorted(_REGISTRY)


def build_loss(cfg: LossConfig) -> LossFn:
    """The loss named by ``cfg.type``; an unknown name lists the valid ones."""
    if cfg.type not in _REGISTRY:
        raise ValueError(f"training loss.type {cfg.type!r} is unknown; valid: {', '.join(available_losses())}")
    return _REGISTRY[cfg.type](cfg)


from cora.training.losses import densecl, infonce, vicreg, vicreg_pairwise  # noqa: E402, F401  (registration)

__all__ = ["LossFn", "available_losses", "build_loss", "register"]
