"""The demo's text corpora: what the kit's tokenizer and the language prior learn from.

Only *training* panoramas contribute, so no test answer ever reaches the LLM before evaluation.
"""

from __future__ import annotations

from typing import Any

from cora.config import CoraConfig


def _train_samples(config: CoraConfig) -> list[Any]:
    from cora.data.synth import SynthPano, split_of

    syn = config.data.synth
    pano = SynthPano(syn.n, syn.seed, syn.width, syn.width // 2, syn.min_objects, syn.max_objects)
    return [pano.text(i) for i in range(syn.n) if split_of(i, syn.n) == "train"]


def train_corpus(config: CoraConfig) -> list[str]:
    """Captions, questions and answers of the *training* panoramas only (no test answer leaks into the LLM)."""
    from cora.data.records import CAPTION_QUERY

    texts = [CAPTION_QUERY]
    for sample in _train_samples(config):
        texts.append(sample.caption)
        for query, answer in sample.qa:
            texts.extend((query, answer))
    return texts


def chat_corpus(config: CoraConfig, tokenizer: Any) -> list[str]:
    """The training questions as the generator will ask them (chat template, generation prompt) + the answer.

    The language prior reads the chat format (with a Qwen3-style template, a generation prompt ending
    in an empty think block) before any stage does, as a real chat LLM has.
    """
    from cora.data.records import CAPTION_QUERY
    from cora.processors.text import ChatFormatter

    formatter = ChatFormatter(
        tokenizer, system_prompt=config.data.system_prompt, vision_token=config.models.vision_token
    )
    texts = []
    for sample in _train_samples(config):
        for query, answer in [(CAPTION_QUERY, sample.caption), *sample.qa]:
            texts.append(formatter.prompt_text(query) + answer)
    return texts
