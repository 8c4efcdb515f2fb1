"""Held-out measures of a trained model: teacher-forced answer loss and exact-match answer accuracy."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

IGNORE_INDEX = -100


@torch.no_grad()
def heldout_lm_loss(model: torch.nn.Module, dataset: Dataset, collate: Callable[[list[Any]], Any],
                    batch_size: int = 8, blind: bool = False) -> float:
    """Mean cross-entropy per answer token over ``dataset`` (token-weighted across batches).

    ``blind``: pixels are zeroed, as in the blind ablation's training.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        if batch is None:
            continue
        pixels = torch.zeros_like(batch["pixel_values"]) if blind else batch["pixel_values"]
        out = model(pixels, batch["geometries"], input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"], labels=batch["labels"])
        # The model's loss is a mean over this batch's answer tokens (labels shifted by one).
        tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        total += float(out.loss) * tokens
        count += tokens
    model.train(was_training)
    if not count:
        raise ValueError("the held-out set has no answer tokens")
    return total / count


def normalise_answer(text: str) -> str:
    """Lower case, punctuation and articles' surrounding space removed, whitespace collapsed."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(text.split())


def answer_accuracy(pairs: Iterable[tuple[str, Sequence[str]]]) -> float:
    """Fraction of (prediction, references) whose normalised prediction equals a normalised reference."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no predictions to score")
    hits = sum(normalise_answer(p) in {normalise_answer(r) for r in refs} for p, refs in pairs)
    return hits / len(pairs)
