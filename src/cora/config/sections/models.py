from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from cora.config.base import ArchSpec, StrictModel, registered
from cora.registry import RESAMPLERS

StitchingMode = Literal["stride_views", "unique", "concat"]
DType = Literal["auto", "float32", "bfloat16", "float16"]


class ResamplerConfig(StrictModel):
    """Options of the resampler; each resampler reads the ones it uses."""

    depth: int = Field(4, ge=1, description="blocks (bimamba, c_abstractor half-depth, perceiver layers)")
    d_state: int = Field(64, ge=1, description="Mamba state size")
    d_conv: int = Field(4, ge=1, description="Mamba depthwise conv width")
    expand: int = Field(2, ge=1, description="Mamba inner expansion")
    hidden_dim: int = Field(1536, ge=1, description="mlp hidden width")
    num_heads: int = Field(8, ge=1, description="attention heads (perceiver, qformer)")
    num_latents: int = Field(256, ge=1, description="learned queries (perceiver, qformer)")
    pool_size: int = Field(2, ge=1, description="spatial pool / avgpool / conv stride")
    drop_ratio: float = Field(0.25, ge=0.0, lt=1.0, description="masked_drop fraction during training")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    c_abstractor_pool: bool = Field(False, description="c_abstractor: average-pool by pool_size between its halves")
    chunk_size: int = Field(16, ge=1, description="bimamba: tokens per chunk of the PyTorch selective scan")
    direction_merge: Literal["mean", "linear"] = Field(
        "mean",
        description="bimamba: average the two directions (the reference design) or merge them with a Linear(2D→D)",
    )


class ProjectorConfig(StrictModel):
    """VICReg projector (stage 1) and panorama projector (stages 2-3)."""

    vicreg_hidden_dim: int = 1024
    vicreg_out_dim: int = 1024
    vicreg_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="0 for VICReg, 0.1 for contrastive")
    stitching: StitchingMode = "stride_views"
    positional_encoding: Literal["sinusoidal", "none"] = "sinusoidal"
    max_freq: float = Field(32.0, ge=1.0, description="highest sinusoid frequency (cycles per 360° of yaw)")


class ModelsConfig(StrictModel):
    """Which vision tower, resampler and LLM; by hub name, local folder or architecture."""

    vision_name: str = "google/siglip2-so400m-patch16-256"
    vision_arch: ArchSpec | None = Field(None, description="random-init architecture; overrides vision_name")
    language_model_name: str = "Qwen/Qwen3-0.6B"
    language_model_arch: ArchSpec | None = Field(None, description="random-init architecture")
    tokenizer_name: str | None = Field(None, description="defaults to language_model_name")
    resampler_type: registered(RESAMPLERS) = "bimamba"
    latent_dim: int = Field(1024, ge=1)
    resampler: ResamplerConfig = ResamplerConfig()
    projector: ProjectorConfig = ProjectorConfig()
    vision_token: str = "<|vision|>"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    dtype: DType = "auto"

    @field_validator("resampler")
    @classmethod
    def _resampler_options_apply(cls, resampler: ResamplerConfig, info: ValidationInfo) -> ResamplerConfig:
        # One flat options section serves every resampler: an option the chosen one does not take
        # would be silently dropped, so a value changed from its default must belong to it.
        kind = info.data.get("resampler_type")
        if kind is None:  # resampler_type itself is invalid: that error is reported
            return resampler
        takes = RESAMPLERS.options[kind]
        defaults = ResamplerConfig()
        stray = [
            k for k in ResamplerConfig.model_fields if k not in takes and getattr(resampler, k) != getattr(defaults, k)
        ]
        if stray:
            raise PydanticCustomError(
                "option_not_taken",
                "{options} set, but resampler_type '{kind}' does not take {pronoun} (it takes: {takes})",
                {
                    "key": stray[0],
                    "options": ", ".join(stray),
                    "kind": kind,
                    "pronoun": "it" if len(stray) == 1 else "them",
                    "takes": ", ".join(takes) or "no options",
                },
            )
        return resampler
