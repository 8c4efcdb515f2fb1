"""Train a byte-level BPE tokenizer offline and wrap it as an HF tokenizer with a chat template."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import resources

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_TOKEN = "<|vision|>"
# Same roles as Qwen3's specials: pad/eos, chat markers, thinking markers, our vision slot.
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END, "<think>", "</think>", VISION_TOKEN]


def kit_chat_template() -> str:
    """The kit's Qwen3-style chat template (shipped in the package)."""
    return resources.files("cora.kit").joinpath("chat_template.jinja").read_text(encoding="utf-8")


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2, model_max_length: int = 4096
) -> PreTrainedTokenizerFast:
    """A byte-level BPE (Qwen/GPT-2 style: any text encodes, nothing is unknown).

    The special tokens get the first ids; ``<|im_end|>`` is the eos token as in Qwen3.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    hf.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    hf.chat_template = kit_chat_template()
    logger.info("trained a byte-level BPE tokenizer: %d tokens", len(hf))
    return hf
