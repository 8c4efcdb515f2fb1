"""Run by tests/test_rl_stage.py: stage 3 then an ``rl`` stage of the tiny model under DDP (gloo, 2 CPU processes).

``python -m tests.ddp_rl_run CONFIG OUT``: each rank saves its final weights to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from cora.config import load_config
from cora.training.runner import train

if __name__ == "__main__":
    config, out = load_config(sys.argv[1]), Path(sys.argv[2])
    result = train(config)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    weights = {k: v.detach().cpu() for k, v in result.model.named_parameters() if v.requires_grad}
    torch.save(weights, out / f"rank{rank}.pt")
