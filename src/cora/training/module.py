"""The LightningModule of one training stage: losses per the stage's weights, optimiser, schedule, resume.

One module per stage (the runner builds it): the model's per-component modes are already
applied (``model.set_stage``), so the trainable parameters are exactly those with
``requires_grad``. Loss = ``lm_loss_weight × LM cross-entropy + overlap_loss_weight × overlap loss``
(stage 1: overlap only; stage 2: LM + 0.1 × VICReg through the frozen projector; stage 3: LM).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from cora.config.sections.training import StageConfig
from cora.data.dataset import is_empty
from cora.data.records import BadRow
from cora.training.contract import StageModel
from cora.training.diagnostics import overlap_diagnostics
from cora.training.losses import build_loss
from cora.training.schedule import StageSampler, warmup_cosine
from cora.training.sharding import FullyShardedStrategy, is_sharded, load_optimizer_state, shard_model


class TrainingDiverged(RuntimeError):
    """A training step whose loss is not finite: the stage stops there instead of training on garbage."""


@dataclass
class StageData:
    """What a stage trains and validates on; ``collate`` builds the batch dict of the data contract."""

    train: Dataset
    val: Dataset | None
    collate: Callable[[list[Any]], dict[str, Any]]
    #: ids that end an answer (end of turn, eos): where an ``rl`` stage's sampled answers stop
    stop_token_ids: tuple[int, ...] = ()
    #: rows refused while the files were read (``bad_row_policy: skip``); the run's summary counts them
    #: with those refused later (an image that does not decode), each row once
    read_bad_rows: tuple[BadRow, ...] = ()


@dataclass
class StagePlan:
    """How many optimiser steps a stage takes and where it starts (non-zero when resuming)."""

    total_steps: int
    start_step: int = 0
    seed: int = 0

    def micro_batches(self, accumulate: int) -> int:
        return self.total_steps * accumulate


class StageModule(L.LightningModule):
    def __init__(
        self,
        model: StageModel,
        stage_name: str,
        stage_cfg: StageConfig,
        data: StageData,
        plan: StagePlan,
        resume: dict[str, Any] | None = None,
        blind: bool = False,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.stage_name, self.stage_cfg, self.data, self.plan = stage_name, stage_cfg, data, plan
        self.resume, self.blind, self.num_workers = resume, blind, num_workers
        self.overlap_loss = build_loss(stage_cfg.loss) if stage_cfg.overlap_loss_weight > 0 else None
        self._t_last: float | None = None
        self.last_train: dict[str, float] = {}
        self._val_sums: dict[str, float] = {}
        self._val_count = 0
        self.val_metrics: dict[str, float] = {}
        # What this rank trained on, and the rows it skipped, each once by (file, line).
        self.samples_seen = 0
        self.skipped_samples = 0
        self.bad_rows: dict[tuple[str, int], BadRow] = {}
        self._stand_in_batch: dict[str, Any] | None = None  # see _skipped_step
        # Held-out metrics before the stage trained (feedback stages measure forgetting); kept across a resume.
        self.val_before: dict[str, float] = dict(((resume or {}).get("module_state") or {}).get("val_before") or {})

    # -- forward + losses ------------------------------------------------------------
    def _forward(self, batch: dict[str, Any]):
        pixels = batch["pixel_values"]
        if self.blind:
            # The ablation: the same model and steps, but no visual information at all.
            pixels = torch.zeros_like(pixels)
        return self.model(
            pixels,
            batch["geometries"],
            input_ids=batch.get("input_ids"),
            attention_mask=batch.get("attention_mask"),
            labels=batch.get("labels"),
        )

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """Total loss (a scalar on the graph) and its named parts."""
        out = self._forward(batch)
        cfg = self.stage_cfg
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        if cfg.lm_loss_weight > 0 and batch.get("labels") is not None:
            if out.loss is None:
                raise RuntimeError(f"stage {self.stage_name}: the model returned no LM loss for a batch with labels")
            parts["lm_loss"] = out.loss.float()
            total = cfg.lm_loss_weight * parts["lm_loss"]
        if self.overlap_loss is not None:
            if out.overlap_features is None:
                raise RuntimeError(
                    f"stage {self.stage_name}: overlap_loss_weight is {cfg.overlap_loss_weight} but "
                    "the model returned no overlap features (is vicreg_projector 'unused'?)"
                )
            parts["overlap_loss"] = self.overlap_loss(out.overlap_features, out.tile_geometries)
            term = cfg.overlap_loss_weight * parts["overlap_loss"]
            total = term if total is None else total + term
        if total is None:
            raise RuntimeError(
                f"stage {self.stage_name} has nothing to learn from: lm_loss_weight="
                f"{cfg.lm_loss_weight} (labels present: {batch.get('labels') is not None}), "
                f"overlap_loss_weight={cfg.overlap_loss_weight}"
            )
        return total, parts, out

    def _count(self, batch: dict[str, Any] | None) -> bool:
        """Record the batch's skipped rows (each once) and trained samples; False when no sample is left."""
        if batch is None:
            return False
        for bad in batch.get("skipped") or ():
            self.skipped_samples += 1
            self.bad_rows.setdefault((bad.file, bad.line), bad)
        if is_empty(batch):
            return False
        self.samples_seen += batch["pixel_values"].shape[0]
        return True

    def _skipped_step(self) -> torch.Tensor | None:
        """The step of a batch with no readable sample left (``bad_row_policy: skip``): skipped on one process.

        In a distributed run every rank must take part in each step's gradient exchange (Lightning refuses a
        skipped step there: the run stopped), so this rank steps on a stand-in — its first readable training
        row — with the loss weighted 0: its gradient is zero and the step's average over ranks counts it
        (as an empty micro-batch counts under accumulation). Its forward draws no random numbers (a resumed
        run draws what the uninterrupted one drew). Were every rank's batch unreadable in the same step, the
        optimiser would still step on zero gradients (AdamW's momentum and weight decay move the weights).
        """
        if self.trainer.world_size == 1:
            return None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            loss, parts, _ = self.losses(self._stand_in())
        self._check_finite(loss, parts)
        return loss * 0.0

    def _stand_in(self) -> dict[str, Any]:
        """The first readable row of the training data, as a batch on this module's device (kept)."""
        if self._stand_in_batch is None:
            for i in range(len(self.data.train)):
                batch = self.data.collate([self.data.train[i]])
                if not is_empty(batch):
                    self._stand_in_batch = self.transfer_batch_to_device(batch, self.device, 0)
                    break
            else:
                raise RuntimeError(f"stage {self.stage_name}: no row of the training data has a readable image")
        return self._stand_in_batch

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if not self._count(batch):  # every image of the batch was unreadable and skipped (bad_row_policy: skip)
            return self._skipped_step()
        loss, parts, _ = self.losses(batch)
        self._check_finite(loss, parts)
        bs = batch["pixel_values"].shape[0]
        self.log("loss", loss.detach(), prog_bar=True, batch_size=bs)
        for name, value in parts.items():
            self.log(f"train/{name}", value.detach(), batch_size=bs)
        self.last_train = {"loss": float(loss.detach())} | {k: float(v.detach()) for k, v in parts.items()}
        return loss

    def _check_finite(self, loss: torch.Tensor, parts: dict[str, Any]) -> None:
        if torch.isfinite(loss):
            return
        step = self.plan.start_step + self.trainer.global_step + 1
        values = ", ".join(f"{k} {float(v):.4g}" for k, v in parts.items())
        raise TrainingDiverged(
            f"stage {self.stage_name}: the loss is {float(loss)} at step {step} of {self.plan.total_steps} "
            f"({values}); the stage stops here (lower its lr, or check the data for non-finite inputs)"
        )

    def extra_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this module beyond weights, optimiser and RNG (GRPO: its sampled answers)."""
        return {"val_before": dict(self.val_before)} if self.val_before else {}

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if is_empty(batch):
            return
        now = time.perf_counter()
        if self._t_last is not None:
            world = self.trainer.world_size if self._trainer is not None else 1
            rate = batch["pixel_values"].shape[0] * world / max(now - self._t_last, 1e-9)
            self.log("samples/s", rate, prog_bar=True, batch_size=1)
        self._t_last = now
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True, batch_size=1)
        self.log("stage_step", float(self.plan.start_step + self.trainer.global_step), batch_size=1)

    def on_validation_epoch_start(self) -> None:
        self._val_sums, self._val_count = {}, 0

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if is_empty(batch):
            if is_sharded(self.model) and self.trainer.world_size > 1:
                self.losses(self._stand_in())  # a sharded forward gathers weights with every rank: take part
            return
        loss, parts, out = self.losses(batch)
        values = {"val_loss": float(loss)} | {f"val_{k}": float(v) for k, v in parts.items()}
        # The stage-1 diagnostics judge the overlap this stage learns: none without an overlap loss
        # (cube faces, a resized ERP: there may be no overlapping tiles to pair at all).
        if self.overlap_loss is not None and out.overlap_features is not None:
            values |= overlap_diagnostics(
                out.overlap_features,
                out.tile_geometries,
                self.stage_cfg.loss.overlap_columns,
                out.resampler_features,
                self.stage_cfg.loss.pairing,
            )
        for key, value in values.items():
            self._val_sums[key] = self._val_sums.get(key, 0.0) + value
        self._val_count += 1

    def on_validation_epoch_end(self) -> None:
        sums, count = self._val_sums, self._val_count
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # Every rank validates the whole held-out set, but one may have read fewer batches (an image
            # that failed to load there): combine every rank's sums, always (a rank that skipped this
            # collective would leave the others waiting).
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (sums, count))
            sums = {}
            for rank_sums, _ in gathered:
                for key, value in rank_sums.items():
                    sums[key] = sums.get(key, 0.0) + value
            count = sum(c for _, c in gathered)
        if not count:
            return
        metrics = {k: v / count for k, v in sums.items()}
        self.val_metrics = metrics
        for key, value in metrics.items():
            self.log(f"val/{key}", value, prog_bar=key == "val_loss", sync_dist=False, rank_zero_only=True)

    # -- data ------------------------------------------------------------------------
    def transfer_batch_to_device(self, batch: dict[str, Any], device: torch.device, dataloader_idx: int) -> dict:
        # Geometries are frozen dataclasses Lightning cannot walk: move the tensors only.
        if batch is None:
            return None
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def train_dataloader(self) -> DataLoader:
        cfg = self.stage_cfg
        accumulate = cfg.accumulate_grad_batches
        sampler = StageSampler(
            len(self.data.train),
            cfg.batch_size,
            self.plan.micro_batches(accumulate),
            seed=self.plan.seed,
            start_micro_batch=self.plan.start_step * accumulate,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
            repeat=cfg.rl.iterations if cfg.kind == "rl" else 1,
        )
        return DataLoader(
            self.data.train,
            batch_size=cfg.batch_size,
            sampler=sampler,
            collate_fn=self.data.collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.data.val is None or len(self.data.val) == 0:
            return []
        return DataLoader(
            self.data.val,
            batch_size=self.stage_cfg.batch_size,
            shuffle=False,
            collate_fn=self.data.collate,
            num_workers=self.num_workers,
        )

    # -- optimisation ----------------------------------------------------------------
    def configure_model(self) -> None:
        # Called by Lightning before the optimiser exists; only strategy fsdp shards (on its data-parallel mesh).
        if isinstance(self.trainer.strategy, FullyShardedStrategy):
            shard_model(self.model, self.trainer.strategy.device_mesh["data_parallel"])

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.stage_cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError(f"stage {self.stage_name} has no trainable parameters (check its component modes)")
        # No weight decay on biases and norm scales (1-D parameters).
        groups = [
            {"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
        total = self.plan.total_steps
        warmup = round(cfg.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
        if self.resume is not None:
            load_optimizer_state(self.model, optimizer, self.resume["optimizer"], self.resume.get("optimizer_layout"))
            scheduler.load_state_dict(self.resume["scheduler"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        if self.resume is not None and "rng" in self.resume:
            from cora.training.checkpoint import set_rng_state

            set_rng_state(self.resume["rng"])
