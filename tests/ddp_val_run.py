"""Run by tests/test_ddp_resume.py: the stand-in model's finetune stage under DDP (gloo, 2 CPU processes) where
rank 1 reads no held-out sample at all (every image unreadable there), rank 0 all of them.

``python -m tests.ddp_val_run OUT``: each rank writes its validation metrics to ``OUT/val<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cora.training.module import StageData
from cora.training.runner import train
from tests.standin import StandinData, collate, standin_config, standin_model

RANK = int(os.environ.get("LOCAL_RANK", "0"))


class UnreadableOnRank1(StandinData):
    def __getitem__(self, i: int) -> dict | None:
        return None if RANK == 1 else super().__getitem__(i)  # None: a sample skipped (bad_row_policy: skip)


def skipping_collate(items: list[dict | None]) -> dict:
    kept = [it for it in items if it is not None]
    return collate(kept) if kept else {"skipped": []}


def data(config, stage, stage_cfg, tokenizer) -> StageData:
    return StageData(StandinData(24, seed=0), UnreadableOnRank1(8, seed=1), skipping_collate)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    config = standin_config(out, strategy="ddp", devices=2, stages=["finetune"])
    result = train(config, model_factory=standin_model, data_factory=data)
    (out / f"val{RANK}.json").write_text(json.dumps(result.summaries["finetune"]["val"]))
