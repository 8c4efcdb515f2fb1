from __future__ import annotations

from pydantic import Field

from cora.config.base import ArchSpec, StrictModel


class TokenizerSpec(StrictModel):
    """A byte-level BPE tokenizer trained offline on the kit's corpus."""

    vocab_size: int = Field(2048, ge=300)
    min_frequency: int = Field(2, ge=1)
    model_max_length: int = Field(4096, ge=16)


class KitConfig(StrictModel):
    """The offline tiny-model kit: what `cora kit build` writes as HF folders."""

    out_dir: str = ".cora/kit"
    vision: ArchSpec
    language_model: ArchSpec
    tokenizer: TokenizerSpec = TokenizerSpec()
