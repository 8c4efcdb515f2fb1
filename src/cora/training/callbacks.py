"""Lightning callbacks of the stage runner: periodic atomic checkpoints and a plain progress line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L

from cora.training.checkpoint import rng_state, save_checkpoint, trainable_state_dict
from cora.training.sharding import is_sharded, optimizer_state, reshard
from cora.training.state import StageState

logger = logging.getLogger(__name__)


def checkpoint_payload(module: L.LightningModule, step: int, complete: bool) -> dict[str, Any] | None:
    """What a stage checkpoint holds. Collective when the model is sharded (FSDP): every rank must call it;
    rank 0 gets the payload, the other ranks None (rank 0 writes)."""
    trainer = module.trainer
    if is_sharded(module.model):
        reshard(module.model)
    optimizer, layout = optimizer_state(module.model, trainer.optimizers[0])
    trainable = trainable_state_dict(module.model, keep=trainer.is_global_zero)
    if not trainer.is_global_zero:
        return None
    return {
        "format": 1,
        "stage": module.stage_name,
        "step": step,
        "total_steps": module.plan.total_steps,
        "complete": complete,
        "trainable": trainable,
        "optimizer": optimizer,
        "optimizer_layout": layout,
        "strategy": type(trainer.strategy).__name__,
        "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
        "rng": rng_state(),
        "metrics": dict(module.val_metrics),
        "module_state": module.extra_state(),
    }


class StageCheckpoint(L.Callback):
    """Every ``every_n_steps`` optimiser steps: write ``step-XXXXXX.ckpt`` and point stage_state.json at it.

    Only rank 0 writes (every rank gathers when the model is sharded); older intermediate checkpoints
    beyond ``keep`` are deleted after the new one is safely in place.
    """

    def __init__(self, run_dir: Path, state: StageState, every_n_steps: int, keep: int) -> None:
        self.run_dir, self.state, self.every, self.keep = Path(run_dir), state, every_n_steps, keep

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / "checkpoints" / stage

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        accumulate = module.stage_cfg.accumulate_grad_batches
        if (batch_idx + 1) % accumulate:
            return
        step = module.plan.start_step + (batch_idx + 1) // accumulate
        if step % self.every or step >= module.plan.total_steps:
            return
        payload = checkpoint_payload(module, step, complete=False)
        if payload is None:
            return
        path = save_checkpoint(self.stage_dir(module.stage_name) / f"step-{step:06d}.ckpt", payload)
        self.state.last_checkpoint[module.stage_name] = str(path.relative_to(self.run_dir))
        self.state.save(self.run_dir)
        old = sorted(self.stage_dir(module.stage_name).glob("step-*.ckpt"))[: -self.keep]
        for stale in old:
            stale.unlink(missing_ok=True)
        logger.debug("checkpoint %s", path)


class LogLineProgress(L.Callback):
    """One log line every ``every`` steps (loss, lr, samples/s) when the live bar is off."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = module.plan.start_step + trainer.global_step
        accumulate = module.stage_cfg.accumulate_grad_batches
        if (batch_idx + 1) % accumulate or step % self.every or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        logger.info(
            "%s step %d/%d  loss %.4f  lr %.2e  %.1f samples/s",
            module.stage_name,
            step,
            module.plan.total_steps,
            float(m.get("loss", float("nan"))),
            float(m.get("lr", 0.0)),
            float(m.get("samples/s", float("nan"))),
        )
