"""Resampler registry: one file per resampler, one line here each."""

from __future__ import annotations

import inspect
from typing import Any

from cora.model.resamplers.avgpool import AvgPoolResampler
from cora.model.resamplers.base import Resampler
from cora.model.resamplers.bimamba import BiMambaResampler
from cora.model.resamplers.c_abstractor import CAbstractor
from cora.model.resamplers.conv import ConvResampler
from cora.model.resamplers.identity import IdentityResampler
from cora.model.resamplers.masked_drop import MaskedDropResampler
from cora.model.resamplers.mlp import MLPResampler
from cora.model.resamplers.perceiver import PerceiverResampler
from cora.model.resamplers.qformer import QFormerResampler
from cora.model.resamplers.spatial_pool import SpatialPoolResampler

RESAMPLERS: dict[str, type[Resampler]] = {
    "mlp": MLPResampler,
    "bimamba": BiMambaResampler,
    "c_abstractor": CAbstractor,
    "perceiver": PerceiverResampler,
    "qformer": QFormerResampler,
    "spatial_pool": SpatialPoolResampler,
    "masked_drop": MaskedDropResampler,
    "identity": IdentityResampler,
    "avgpool": AvgPoolResampler,
    "conv": ConvResampler,
}


def build_resampler(name: str, in_dim: int, out_dim: int, **options: Any) -> Resampler:
    """The resampler ``name``; ``options`` it does not take are ignored (one flat config for all)."""
    if name not in RESAMPLERS:
        raise ValueError(f"unknown resampler {name!r}; valid: {', '.join(sorted(RESAMPLERS))}")
    cls = RESAMPLERS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "in_dim", "out_dim"}
    return cls(in_dim, out_dim, **{k: v for k, v in options.items() if k in accepted})


__all__ = ["RESAMPLERS", "Resampler", "build_resampler"]
