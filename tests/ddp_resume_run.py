"""Run by tests/test_ddp_resume.py: the tiny model's stages under a distributed strategy (gloo, 2 CPU processes).

``python -m tests.ddp_resume_run CONFIG OUT MODE STAGE``: MODE ``whole`` trains to the end, ``crash`` stops
both ranks after step 3 of STAGE (its checkpoint written), ``resume`` continues with ``--resume auto``; each
rank that finishes saves its final trainable weights to ``OUT/rank<r>.pt`` and where STAGE resumed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch

from cora.config import load_config
from cora.training.runner import train


class Crash(L.Callback):
    def __init__(self, stage: str) -> None:
        self.stage = stage

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.stage_name == self.stage and module.plan.start_step + trainer.global_step >= 3:
            raise SystemExit(3)  # both ranks stop at the same step, after the step-3 checkpoint


if __name__ == "__main__":
    config, out, mode, stage = load_config(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    if mode == "crash":
        train(config, callbacks=[Crash(stage)])
        sys.exit(0)  # not reached
    result = train(config, resume="auto" if mode == "resume" else None)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    weights = {k: v.detach().cpu() for k, v in result.model.named_parameters() if v.requires_grad}
    torch.save(weights, out / f"rank{rank}.pt")
    (out / f"resumed_at{rank}.txt").write_text(str(result.summaries[stage]["resumed_at"]))
