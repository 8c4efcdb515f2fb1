"""Held-out measures of a trained model: teacher-forced answer loss and exact-match answer accuracy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from cora.data.dataset import is_empty

__all__ = ["answer_loss_sum", "heldout_lm_loss", "heldout_lm_loss_by_group"]

IGNORE_INDEX = -100


def answer_loss_sum(
    model: torch.nn.Module, dataset: Dataset, collate: Callable[[list[Any]], Any], batch_size: int, blind: bool
) -> tuple[float, int]:
    """(sum of answer-token cross-entropies, answer tokens) over ``dataset``."""
    total, count = 0.0, 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        if is_empty(batch):
            continue
        pixels = torch.zeros_like(batch["pixel_values"]) if blind else batch["pixel_values"]
        out = model(
            pixels,
            batch["geometries"],
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
        )
        # The model's loss is a mean over this batch's answer tokens (labels shifted by one).
        tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        total += float(out.loss) * tokens
        count += tokens
    return total, count


@torch.no_grad()
def heldout_lm_loss_by_group(
    model: torch.nn.Module,
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    groups: Mapping[str, Sequence[int]],
    batch_size: int = 8,
    blind: bool = False,
) -> tuple[float, dict[str, float]]:
    """Mean cross-entropy per answer token over every group of item indices together, and per group
    (token-weighted across batches; each item is run once).

    ``blind``: pixels are zeroed, as in the blind ablation's training.
    """
    was_training = model.training
    model.eval()
    try:
        sums = {
            name: answer_loss_sum(model, Subset(dataset, list(idx)), collate, batch_size, blind)
            for name, idx in groups.items()
        }
    finally:
        model.train(was_training)
    empty = [name for name, (_, count) in sums.items() if not count]
    if empty:
        raise ValueError(f"the held-out set has no answer tokens (groups {empty})")
    overall = sum(t for t, _ in sums.values()) / sum(c for _, c in sums.values())
    return overall, {name: total / count for name, (total, count) in sums.items()}


def heldout_lm_loss(
    model: torch.nn.Module,
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    batch_size: int = 8,
    blind: bool = False,
) -> float:
    """Mean cross-entropy per answer token over ``dataset`` (token-weighted across batches).

    ``blind``: pixels are zeroed, as in the blind ablation's training.
    """
    return heldout_lm_loss_by_group(model, dataset, collate, {"all": range(len(dataset))}, batch_size, blind)[0]
