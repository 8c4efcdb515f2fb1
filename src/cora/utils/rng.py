"""``seeded(seed)``: run a block on its own seeded RNG and leave the caller's RNG as it was.

Builders (model components, the tiny kit, tiny VLMs) initialise weights from a seed without
reseeding the global generators a training loop or a test relies on: every torch generator they
may touch (CPU, and each CUDA device) is forked around the block and restored after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
