"""Offline tokenizers for the tiny VLM families: a small byte-level BPE with the family's own special tokens.

A real checkpoint ships its tokenizer; the tiny offline models need one that knows the
family's image tokens (``<|image_pad|>``, ``<IMG_CONTEXT>``, ``<image_soft_token>`` ...) as
single special tokens, so that the family's own processor can find and expand them.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import islice

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from cora.kit.corpus import scene_corpus


@lru_cache(maxsize=4)
def _corpus(n: int) -> tuple[str, ...]:
    return tuple(islice(scene_corpus(n=n, seed=0), 3 * n))


def family_tokenizer(
    specials: tuple[str, ...], chat_template: str | None, vocab_size: int = 700, corpus_size: int = 600, **named: str
) -> PreTrainedTokenizerFast:
    """Train a tiny BPE whose first ids are ``specials`` (pass ``eos_token=``, ``pad_token=``, ``bos_token=``
    and family names such as ``image_token=`` / ``context_image_token=`` as keywords).

    Named tokens must be among ``specials``; named keywords ending in ``_token`` become tokenizer
    attributes (``tok.image_token``, ``tok.image_token_id``) as in the real checkpoints.
    """
    missing = [v for v in named.values() if v not in specials]
    if missing:
        raise ValueError(f"named tokens {missing} are not among the special tokens {list(specials)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(corpus_size), trainer=trainer)
    standard = {k: named[k] for k in ("eos_token", "pad_token", "bos_token", "unk_token") if k in named}
    extra = {k: v for k, v in named.items() if k not in standard}
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=8192, clean_up_tokenization_spaces=False, **standard, **extra
    )
    named_values = set(named.values())
    hf.add_special_tokens({"extra_special_tokens": [s for s in specials if s not in named_values]})
    if chat_template is not None:
        hf.chat_template = chat_template
    return hf
