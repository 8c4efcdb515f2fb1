from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from cora.config.base import StrictModel


class SynthConfig(StrictModel):
    """SynthPano, the built-in synthetic dataset (``cora data synth``, the demo)."""

    out_dir: str = Field(".cora/synth", description="where images, CSV and JSONL files are written")
    n: int = Field(300, ge=1, description="panoramas, split 80/10/10 into train/val/test")
    seed: int = 0
    width: int = Field(512, ge=16, multiple_of=2, description="ERP width; height is width / 2")
    min_objects: int = Field(2, ge=1, le=8)
    max_objects: int = Field(5, ge=1, le=6, description="at most 6: colours never repeat in a scene")

    @model_validator(mode="after")
    def _object_range(self) -> SynthConfig:
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects {self.min_objects} > max_objects {self.max_objects}")
        return self


class DataConfig(StrictModel):
    """Dataset files (CSV or JSONL, docs/ARCHITECTURE.md "Data") and how bad rows are handled."""

    train: str | None = Field(None, description="CSV/JSONL for stages 2-3")
    val: str | None = None
    test: str | None = None
    vision_train: str | None = Field(None, description="image-only CSV for stage 1; default: train")
    bad_row_policy: Literal["error", "skip"] = "error"
    max_text_length: int = Field(512, ge=16)
    system_prompt: str | None = None
    cache_dir: str = ".cora/cache"
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        4, description="data-loader worker processes; auto: one per CPU beyond the training process's, at most 4"
    )
    pin_memory: bool = True
    view_cache: int = Field(
        0,
        ge=0,
        description="panoramas whose views each loader process keeps in memory "
        "(LRU; 0 = off). Helps when a panorama has many QA rows; costs V*3*S*S*4 bytes each",
    )
    jsonl_tasks: list[Literal["summary", "qa", "grounding"]] = Field(
        ["summary", "qa", "grounding"],
        description="text turns made from a JSONL row: summary caption, qa pairs, object grounding (norm1000)",
    )
    synth: SynthConfig = SynthConfig()
