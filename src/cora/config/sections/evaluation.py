from __future__ import annotations

from pydantic import Field

from cora.config.base import StrictModel


class JudgeConfig(StrictModel):
    """LLM-as-judge against an OpenAI-compatible endpoint."""

    url: str = Field("http://localhost:11434/v1", description="base URL; POST {url}/chat/completions")
    model: str = "qwen3:8b"
    api_key_env: str = Field("OPENAI_API_KEY", description="env var holding the key; unset = no auth header")
    max_retries: int = Field(3, ge=0)
    timeout_s: float = Field(60.0, gt=0.0)
    retry_backoff_s: float = Field(1.0, ge=0.0, description="first retry delay, doubled each retry")
    concurrency: int = Field(4, ge=1, description="requests in flight")
    max_tokens: int = Field(256, ge=1)
    cache_dir: str | None = Field(None, description="answer cache; default: <eval out dir>/judge_cache")


class EvaluationConfig(StrictModel):
    metrics: list[str] = ["bleu4", "meteor", "rouge_l", "cider", "spice"]
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    flush_every: int = Field(50, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="sampling: keep the k most likely tokens (0 = off)")
    repetition_penalty: float = Field(1.0, gt=0.0)
    judge: JudgeConfig | None = None
    allow_incomplete_run: bool = Field(
        False,
        description="generate/eval/serve a run whose stages did not all finish (with a warning naming the "
        "last finished one) instead of refusing it",
    )
