from __future__ import annotations

from typing import Literal

from pydantic import Field

from cora.config.base import StrictModel


class DataConfig(StrictModel):
    """Dataset files (CSV or JSONL, SPEC §6) and how bad rows are handled."""

    train: str | None = Field(None, description="CSV/JSONL for stages 2-3")
    val: str | None = None
    test: str | None = None
    vision_train: str | None = Field(None, description="image-only CSV for stage 1; default: train")
    bad_row_policy: Literal["error", "skip"] = "error"
    max_text_length: int = Field(512, ge=16)
    system_prompt: str | None = None
    cache_dir: str = ".cora/cache"
    num_workers: int = Field(4, ge=0)
    pin_memory: bool = True
    jsonl_tasks: list[Literal["summary", "qa", "grounding"]] = Field(
        ["summary", "qa", "grounding"],
        description="text turns made from a JSONL row: summary caption, qa pairs, object grounding (norm1000)")
