"""Learning-rate schedule and the resumable sample order."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class StageSampler(Sampler[int]):
    """The whole stage's sample order as one sequence, so a resumed run continues at the exact batch.

    Epoch ``e`` is a permutation of the dataset drawn from ``seed + e``; epochs are concatenated
    until ``total_micro_batches`` global micro-batches of ``batch_size × world_size`` samples
    exist. Rank ``r`` takes slice ``r`` of each global micro-batch; the first
    ``start_micro_batch`` micro-batches (already trained) are skipped. ``repeat`` > 1 yields each
    micro-batch that many times in a row (GRPO's ``iterations``: several steps on one batch of prompts).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        total_micro_batches: int,
        seed: int,
        start_micro_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        repeat: int = 1,
    ) -> None:
        if num_samples < 1:
            raise ValueError("the training set is empty")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.total, self.start = total_micro_batches, start_micro_batch
        self.seed, self.rank, self.world, self.shuffle = seed, rank, world_size, shuffle
        self.repeat = repeat

    def _order(self, needed: int) -> list[int]:
        order: list[int] = []
        epoch = 0
        while len(order) < needed:
            if self.shuffle:
                gen = torch.Generator().manual_seed(self.seed + epoch)
                order.extend(torch.randperm(self.num_samples, generator=gen).tolist())
            else:
                order.extend(range(self.num_samples))
            epoch += 1
        return order

    def __iter__(self) -> Iterator[int]:
        per_global = self.batch_size * self.world
        order = self._order(-(-self.total // self.repeat) * per_global)
        for m in range(self.start, self.total):
            base = (m // self.repeat) * per_global + self.rank * self.batch_size
            yield from order[base : base + self.batch_size]

    def __len__(self) -> int:
        return (self.total - self.start) * self.batch_size
