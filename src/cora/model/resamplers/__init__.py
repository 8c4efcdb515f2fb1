"""Resamplers: one file each, named in ``cora.registry.RESAMPLERS`` (a new one: a file + one line there)."""

from __future__ import annotations

import inspect
from typing import Any

from cora.model.resamplers.base import Resampler
from cora.registry import RESAMPLERS


def build_resampler(name: str, in_dim: int, out_dim: int, **options: Any) -> Resampler:
    """The resampler ``name`` (see ``cora.registry.RESAMPLERS``) with the ``options`` it takes.

    The config has one flat options section for every resampler (its validation refuses a changed
    option the chosen resampler does not take), so the options of other resamplers are dropped here.
    """
    cls = RESAMPLERS.load(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "in_dim", "out_dim"}
    return cls(in_dim, out_dim, **{k: v for k, v in options.items() if k in accepted})


__all__ = ["RESAMPLERS", "Resampler", "build_resampler"]
