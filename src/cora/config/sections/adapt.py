"""CORA on off-the-shelf VLMs (SPEC §9): which VLM, how the panorama is shown, PanoRoPE, overlap loss, recipes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from cora.config.base import StrictModel
from cora.config.sections.training import LoRAConfig, LossConfig

InputMode = Literal["native", "resize", "cubemap", "anyres_e2p"]
Recipe = Literal["aligner", "lora"]


class AdaptStageConfig(StrictModel):
    """One stage of the recipe. ``aligner``: projector/merger only (LLM and ViT frozen); ``lora``: LoRA on every
    linear layer of the LLM with the aligner trained whole (PEFT ``modules_to_save``)."""

    recipe: Recipe
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    batch_size: int = Field(1, ge=1)
    accumulate_grad_batches: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    overlap_loss_weight: float | None = Field(None, ge=0.0, description="None: adapt.overlap_loss_weight")


ADAPT_STAGES: dict[str, dict[str, Any]] = {
    "aligner": {"recipe": "aligner", "lr": 1e-4},
    "lora": {"recipe": "lora", "lr": 1e-4},
}


class AdaptConfig(StrictModel):
    """Fine-tune an existing VLM on panoramas given as CORA's views (SPEC §9)."""

    family: str = Field("qwen2_5_vl", description="qwen2_5_vl, qwen3_vl, internvl, gemma3, blip2")
    model_name: str | None = Field(None, description="HF folder or hub id of the checkpoint; None needs tiny: true")
    tiny: bool = Field(False, description="build the family's tiny random model + offline processor (tests, dry runs)")
    tiny_image_size: int = Field(64, ge=16)
    input_mode: InputMode = Field("anyres_e2p", description="native ERP, resized ERP, cubemap faces or CORA views")
    native_height: int = Field(448, ge=16, description="native mode: the ERP is resized to 2h × h first")
    panorope: bool = Field(True, description="yaw-aware rotary positions for the tiles (no effect on blip2)")
    overlap_loss_weight: float = Field(0.1, ge=0.0, description="weight of the overlap loss on adjacent tiles")
    overlap_loss: LossConfig = LossConfig(type="vicreg_pairwise")
    lm_loss_weight: float = Field(1.0, ge=0.0)
    lora: LoRAConfig = Field(LoRAConfig(target_modules=["all-linear"]),
                             description="target_modules ['all-linear'] = every nn.Linear of the LLM but lm_head")
    system_prompt: str | None = None
    max_length: int | None = Field(None, ge=16, description="truncate ids after processing (never in the processor)")
    health_checks: bool = Field(True, description="fail fast on the first batch (placeholders, grids, labels)")
    stages: list[str] = ["aligner", "lora"]
    stage_configs: dict[str, AdaptStageConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _start_from_presets(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = data.get("stage_configs") or {}
        if not isinstance(given, dict):
            return data
        merged = {name: dict(preset) for name, preset in ADAPT_STAGES.items()}
        for name, over in given.items():
            merged[name] = {**merged.get(name, {}), **over} if isinstance(over, dict) else over
        return {**data, "stage_configs": merged}

    @model_validator(mode="after")
    def _consistent(self) -> AdaptConfig:
        missing = [s for s in self.stages if s not in self.stage_configs]
        if missing:
            raise ValueError(f"adapt.stages names {missing} but adapt.stage_configs has only "
                             f"{sorted(self.stage_configs)}")
        if self.model_name is None and not self.tiny:
            raise ValueError("adapt.model_name is required (an HF folder or hub id) unless adapt.tiny is true")
        return self
