"""``DecodingOptions``: how an answer is decoded (greedy by default), shared by every generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cora.config.sections.evaluation import EvaluationConfig


@dataclass(frozen=True)
class DecodingOptions:
    """Greedy by default (Qwen3's own generation config samples; we do not unless asked)."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    use_cache: bool = True

    @classmethod
    def from_config(cls, ev: EvaluationConfig) -> DecodingOptions:
        """From an ``EvaluationConfig`` (the config's ``evaluation:`` section)."""
        return cls(
            max_new_tokens=ev.max_new_tokens,
            do_sample=ev.do_sample,
            temperature=ev.temperature,
            top_p=ev.top_p,
            top_k=ev.top_k,
            repetition_penalty=ev.repetition_penalty,
        )

    def generation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of transformers' ``generate`` for these options."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "use_cache": self.use_cache,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            # neutralise sampling defaults a checkpoint's generation_config may carry (Qwen3's does)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs
