"""The model's components and their per-stage modes (the stage table of ``docs/ARCHITECTURE.md``).

A stage is data: for each component, whether it trains (``full``, or ``last N blocks`` of the
vision tower), stays ``frozen``, trains through ``lora`` adapters (the LLM) or is ``unused`` (not
run at all). :meth:`cora.model.PanoramaVLM.set_stage` applies a :class:`StageModes`; this module
only describes them and checks them, so it imports nothing of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cora.config.sections.training import StageConfig

#: every component of a PanoramaVLM, in forward order (the one list of them)
COMPONENTS = ("vision", "resampler", "vicreg_projector", "panorama_projector", "language_model")
#: components CORA trains from scratch: always part of the saved weights
OWN_COMPONENTS = ("resampler", "vicreg_projector", "panorama_projector")
SIMPLE_MODES = ("full", "frozen", "unused")


@dataclass(frozen=True)
class StageModes:
    """The mode of each component for one stage; the default is the model's state before any stage."""

    vision: str = "frozen"  # "frozen", "full" or "last N blocks"
    resampler: str = "full"
    vicreg_projector: str = "full"
    panorama_projector: str = "full"
    language_model: str = "frozen"

    @classmethod
    def of(cls, stage: StageConfig) -> StageModes:
        """The modes a ``StageConfig`` asks for; a mode a component cannot take is an error naming it."""
        for component in OWN_COMPONENTS:
            mode = getattr(stage, component)
            if mode not in SIMPLE_MODES:
                raise ValueError(f"{component}: mode {mode!r} is not supported; valid: {', '.join(SIMPLE_MODES)}")
        if stage.resampler == "unused":
            raise ValueError("resampler: mode 'unused' is not supported (every stage needs the resampler)")
        blocks = stage.vision_trainable_blocks
        vision = "frozen" if blocks == 0 else "full" if blocks == -1 else f"last {blocks} blocks"
        return cls(vision, stage.resampler, stage.vicreg_projector, stage.panorama_projector, stage.language_model)

    def uses(self, component: str) -> bool:
        """Whether the component runs in this stage's forward."""
        return getattr(self, component) != "unused"

    @property
    def uses_language_model(self) -> bool:
        return self.uses("language_model") and self.uses("panorama_projector")


def component_row(component: str, mode: str, module: nn.Module) -> dict[str, Any]:
    """One row of the stage's component table: mode, parameters in all and trainable."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"component": component, "mode": mode, "total": total, "trainable": trainable}
