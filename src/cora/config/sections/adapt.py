"""CORA on off-the-shelf VLMs: which VLM, how the panorama is shown, PanoRoPE, LoRA defaults.

The stages of an adapt run are ordinary ``training.stages`` / ``training.stage_configs`` (lr, batch,
steps, ``overlap_loss_weight``, ``loss``): a stage whose ``language_model`` is ``lora`` runs the LoRA
recipe (LLM LoRA + aligner in ``modules_to_save``), any other the aligner-only recipe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cora.config.base import StrictModel, registered
from cora.config.sections.training import LoRAConfig
from cora.registry import VLM_FAMILIES

InputMode = Literal["native", "resize", "cubemap", "anyres_e2p"]


class AdaptConfig(StrictModel):
    """Fine-tune an existing VLM on panoramas given as CORA's views (docs/ARCHITECTURE.md, "Adapting ...")."""

    family: registered(VLM_FAMILIES) = Field("qwen2_5_vl", description=", ".join(VLM_FAMILIES))
    model_name: str | None = Field(None, description="HF folder or hub id of the checkpoint; None needs tiny: true")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        None, description="weights dtype when loading model_name (None: the transformers default)"
    )
    attn_implementation: str | None = Field(None, description="e.g. sdpa, flash_attention_2, eager (None: default)")
    tiny: bool = Field(False, description="build the family's tiny random model + offline processor (tests, dry runs)")
    tiny_image_size: int = Field(64, ge=16)
    input_mode: InputMode = Field("anyres_e2p", description="native ERP, resized ERP, cubemap faces or CORA views")
    native_height: int = Field(448, ge=16, description="native mode: the ERP is resized to 2h × h first")
    panorope: bool = Field(True, description="yaw-aware rotary positions for the tiles (no effect on blip2)")
    lora: LoRAConfig = Field(
        LoRAConfig(target_modules=["all-linear"]),
        description="LoRA of stages whose language_model is 'lora' and that set no lora: block; "
        "target_modules ['all-linear'] = every nn.Linear of the LLM but lm_head",
    )
    system_prompt: str | None = None
    max_length: int | None = Field(None, ge=16, description="truncate ids after processing (never in the processor)")
    health_checks: bool = Field(True, description="fail fast on the first batch (placeholders, grids, labels)")

    @model_validator(mode="after")
    def _consistent(self) -> AdaptConfig:
        if self.model_name is None and not self.tiny:
            raise ValueError("adapt.model_name is required (an HF folder or hub id) unless adapt.tiny is true")
        return self
