"""What the stage engine needs from a model and its forward output (``typing.Protocol``s).

The native :class:`cora.model.PanoramaVLM` and the adapted :class:`cora.adapt.runtime.PanoramaAdapter`
both satisfy :class:`StageModel` structurally: neither imports this module (the model layer never
imports training), and the runner never probes a model for optional methods. A new model kind
that implements these methods trains, resumes and checkpoints in the same runner (see
``docs/ARCHITECTURE.md``, "Where to add a part").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from cora.config.sections.training import StageConfig
from cora.processors.geometry import ViewGeometry


class StageOutput(Protocol):
    """A forward's results: the LM loss (with labels), logits, and the overlap features of the tiles."""

    loss: torch.Tensor | None
    logits: torch.Tensor | None
    #: ``[B, T, rows, cols, D]`` projector output of the T perspective tiles, when the stage uses it
    overlap_features: torch.Tensor | None
    tile_geometries: list[ViewGeometry] | None
    #: ``[B, V, rows*cols, latent]`` resampled tokens of every view (diagnostics); None where absent
    resampler_features: torch.Tensor | None
    #: ``[B, T']`` the labels aligned with ``logits`` (-100 where no token is predicted), with labels
    labels: torch.Tensor | None


class StageModel(Protocol):
    """A model the stage runner trains: an ``nn.Module`` that applies a stage's component modes itself."""

    @property
    def tokenizer(self) -> Any:
        """The tokenizer the data pipeline encodes text with (None for image-only stand-ins)."""

    def set_stage(self, stage: StageConfig) -> list[dict[str, Any]]:
        """Apply the stage's per-component modes (``requires_grad``, LoRA); one row per component for the log."""

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward (``training.gradient_checkpointing``)."""

    def __call__(
        self,
        pixel_values: torch.Tensor,
        geometries: Sequence[ViewGeometry],
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> StageOutput:
        """``pixel_values [B, V, 3, S, S]`` in [0, 1] → the stage's outputs."""

    # -- the nn.Module surface the engine uses --
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, nn.Parameter]]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...
