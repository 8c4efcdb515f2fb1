"""Run by tests/test_ddp.py: two stages of the stand-in under DDP (gloo, 2 CPU processes).

Lightning's launcher starts rank 1 by re-running this script; each rank saves its final
weights to ``<out>/rank<r>.pt`` so the test can compare them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from cora.training.runner import train
from tests.standin import standin_config, standin_data, standin_model

if __name__ == "__main__":
    out = Path(sys.argv[1])
    cfg = standin_config(out, strategy="ddp", devices=2)
    cfg.training.stages = ["vision", "resampler"]
    result = train(cfg, model_factory=standin_model, data_factory=standin_data)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, out / f"rank{rank}.pt")
