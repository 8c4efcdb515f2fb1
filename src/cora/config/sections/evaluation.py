from __future__ import annotations

from pydantic import Field

from cora.config.base import StrictModel


class JudgeConfig(StrictModel):
    """LLM-as-judge against an OpenAI-compatible endpoint."""

    url: str = "http://localhost:11434/v1"
    model: str = "qwen3:8b"
    api_key_env: str = "OPENAI_API_KEY"
    max_retries: int = Field(3, ge=0)
    timeout_s: float = Field(60.0, gt=0.0)


class EvaluationConfig(StrictModel):
    metrics: list[str] = ["bleu4", "meteor", "rouge_l", "cider", "spice"]
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    flush_every: int = Field(50, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    judge: JudgeConfig | None = None
