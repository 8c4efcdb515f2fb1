"""The stage runner: stages as data, one Lightning fit per stage, resumable from stage_state.json.

Run folder ``<output_dir>/<experiment.name>/``::

    config.yaml                 the resolved config of the run
    stage_state.json            completed stages, current stage, checkpoints, metrics, summaries
    checkpoints/<stage>/        step-XXXXXX.ckpt while running, final.ckpt when done
    logs/<stage>/               metrics.csv (CSV logger) and TensorBoard events

A checkpoint holds only the weights that train in its stage (+ optimiser, scheduler, RNG);
the weights of a later stage are rebuilt by replaying the earlier stages' checkpoints in order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cora.config import CoraConfig, save_config
from cora.config.sections.training import StageConfig
from cora.data.records import BadRow
from cora.registry import LOGGERS
from cora.training.callbacks import LogLineProgress, StageCheckpoint, checkpoint_payload
from cora.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_trainable,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cora.training.contract import StageModel
from cora.training.curves import write_loss_curves
from cora.training.loggers import LoggerUnavailable, hyperparameters
from cora.training.module import StageData, StageModule, StagePlan
from cora.training.sharding import build_strategy, is_sharded
from cora.training.state import StageState
from cora.utils.machine import resolve_threads, resolve_workers

logger = logging.getLogger(__name__)

ModelFactory = Callable[[CoraConfig], StageModel]
DataFactory = Callable[[CoraConfig, str, StageConfig, Any], StageData]
#: writes a finished run's model as one loadable folder: (model, folder, run config)
Exporter = Callable[[StageModel, Path, CoraConfig], None]


class RunError(Exception):
    """A run that cannot start or continue as asked (existing run, missing stage, changed config)."""


@dataclass
class RunResult:
    run_dir: Path
    stages_run: list[str] = field(default_factory=list)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: StageModel | None = None


def run_dir_of(config: CoraConfig) -> Path:
    return Path(config.experiment.output_dir) / config.experiment.name


def config_digest(config: CoraConfig, legacy: bool = False) -> str:
    """Identity of what a run trains (progress display, logger choice and strategy excluded).

    ``legacy``: the digest as runs made before the strategy left it recorded it (see :func:`same_config`).
    """
    data = config.model_dump(mode="json")
    for key in ("progress_bar", "loggers", "log_every_n_steps"):
        data["training"].pop(key, None)
    if not legacy:
        # How the ranks share the work, not what is learnt: a run may resume under another strategy (an FSDP
        # run with DDP, say). Written as the default so the digests of `auto` runs did not change.
        data["training"]["strategy"] = "auto"
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def same_config(digest: str, config: CoraConfig) -> bool:
    """Whether a recorded ``digest`` is ``config``'s, also one recorded with its strategy (older runs)."""
    return digest in (config_digest(config), config_digest(config, legacy=True))


def resolve_precision(precision: str, accelerator: str = "auto", strategy: str = "auto") -> str:
    """``auto``: bf16 mixed where the GPU supports it, else fp16 mixed on GPU (fp32 under fsdp, which
    Lightning runs without fp16 loss scaling), fp32 on CPU."""
    if precision != "auto":
        return "32-true" if precision == "32" else precision
    if accelerator != "cpu" and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "32-true" if strategy == "fsdp" else "16-mixed"
    return "32-true"


def plan_total_steps(stage_cfg: StageConfig, num_samples: int, world_size: int) -> int:
    """``max_steps`` if set, else ``epochs`` over the data in optimiser steps (at least 1)."""
    if stage_cfg.max_steps is not None:
        return stage_cfg.max_steps
    per_step = stage_cfg.batch_size * stage_cfg.accumulate_grad_batches * world_size
    return max(1, round(stage_cfg.epochs * num_samples / per_step))


def format_table(rows: Sequence[Any]) -> str:
    """Rows of dicts (or sequences, first row = header) as an aligned text table."""
    if not rows:
        return "(empty)"
    if isinstance(rows[0], dict):
        header = list(rows[0])
        body = [[str(r.get(h, "")) for h in header] for r in rows]
    else:
        header, body = [str(c) for c in rows[0]], [[str(c) for c in r] for r in rows[1:]]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [header, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def _build_loggers(config: CoraConfig, run_dir: Path, stage: str) -> list[Any]:
    """The stage's loggers, the resolved config recorded as their hyperparameters."""
    try:
        loggers = [LOGGERS.load(name)(config, run_dir, stage) for name in config.training.loggers]
    except LoggerUnavailable as exc:
        raise RunError(str(exc)) from exc
    params = hyperparameters(config) | {"stage": stage}
    for logger_ in loggers:
        logger_.log_hyperparams(params)
    return loggers


def default_model_factory(config: CoraConfig) -> StageModel:
    from cora.model import build_model

    model = build_model(config)
    mode = config.training.feature_cache
    if mode != "none" and config.training.strategy == "fsdp":
        # A cache hit skips the tower's forward on one rank, but a sharded tower gathers its weights in
        # every rank's forward together: one rank skipping would leave the others waiting.
        logger.info("training.feature_cache %s is not used with strategy fsdp", mode)
    elif mode != "none":
        disk = run_dir_of(config) / "cache" / "tower" if mode == "disk" else None
        model.enable_feature_cache(config.training.feature_cache_items, disk)
    return model


def export_native_model(model: StageModel, out_dir: Path, config: CoraConfig) -> None:
    """The native model as a saved-model folder (what inference and serving load)."""
    from cora.model import PanoramaVLM

    if not isinstance(model, PanoramaVLM):
        raise TypeError(f"export_native_model exports a PanoramaVLM, got {type(model).__name__}")
    model.save_pretrained(out_dir, run_config=config)
    # the run folder itself loads with transformers' Auto classes too (they read config.json's model_type)
    shutil.copyfile(out_dir / "config.json", out_dir.parent / "config.json")


def bad_row_totals(read: Sequence[BadRow], while_training: dict[tuple[str, int], BadRow]) -> dict[str, Any]:
    """A stage's bad rows, each counted once however often it was met: refused when the files were read
    (``read``) or when drawn (``while_training``: an image that does not decode, in any loader worker)."""
    first_read = {(b.file, b.line): b for b in read}
    rows = first_read | {key: b for key, b in while_training.items() if key not in first_read}
    return {
        "skipped_rows": len(rows),
        "skipped_rows_read": len(first_read),
        "skipped_rows_by_reason": dict(sorted(Counter(b.kind for b in rows.values()).items())),
        "bad_rows": [str(b) for b in sorted(rows.values(), key=lambda b: (b.file, b.line))[:50]],
    }


def default_data_factory(config: CoraConfig, stage: str, stage_cfg: StageConfig, tokenizer: Any) -> StageData:
    from cora.training.data import build_stage_data

    return build_stage_data(config, stage, stage_cfg, tokenizer)


class StageRunner:
    """Runs ``config.training.stages`` in order (or one named stage), resuming when asked."""

    def __init__(
        self,
        config: CoraConfig,
        model_factory: ModelFactory | None = None,
        data_factory: DataFactory | None = None,
        callbacks: Sequence[L.Callback] = (),
        trainer_kwargs: dict[str, Any] | None = None,
        exporter: Exporter | None = None,
    ) -> None:
        """``model_factory``/``data_factory``: the model and data of each stage (default: the native
        model and the data pipeline). ``exporter`` writes ``<run>/model`` when the run finishes; with the
        default model factory it defaults to :func:`export_native_model`, with a custom factory to none."""
        self.config = config
        self.exporter = exporter if exporter is not None or model_factory is not None else export_native_model
        self.model_factory = model_factory or default_model_factory
        self.data_factory = data_factory or default_data_factory
        self.extra_callbacks = list(callbacks)
        self.trainer_kwargs = trainer_kwargs or {}
        self.run_dir = run_dir_of(config)

    # -- state ---------------------------------------------------------------------
    def _open_state(self, stage: str | None, resume: str | None) -> StageState:
        cfg = self.config
        digest = config_digest(cfg)
        state = StageState.load(self.run_dir)
        if state is not None and not state.completed and state.current is None and not state.last_checkpoint:
            # A run that failed before its first stage began (a missing model, a bad data file) left only
            # its config: nothing to keep or resume, so a corrected config starts afresh in the same folder.
            logger.info("%s never started training: starting afresh", self.run_dir)
            state = None
        if state is None:
            if resume == "auto":
                logger.info("no run to resume in %s: starting a new one", self.run_dir)
            return StageState(cfg.experiment.name, digest, list(cfg.training.stages))
        if same_config(state.config_digest, cfg):
            state.config_digest = digest
        else:
            if resume is not None:
                raise RunError(
                    f"{self.run_dir}: the config changed since this run started (digest "
                    f"{state.config_digest} → {digest}); resume with the run's own "
                    f"{self.run_dir / 'config.yaml'} or use a new experiment.name"
                )
            if stage is None:
                raise RunError(
                    f"{self.run_dir} holds a run of a different config: use a new experiment.name or delete the folder"
                )
            logger.warning("%s: config differs from the run's; running stage %s on top of it", self.run_dir, stage)
            state.config_digest = digest
        if resume is None and stage is None and (state.completed or state.current) and _is_rank_zero():
            # (Ranks > 0 start after rank 0 has begun writing this file: only rank 0 judges it.)
            raise RunError(
                f"{self.run_dir} already holds a run (completed: {state.completed or 'none'}, "
                f"interrupted: {state.current or 'none'}): pass --resume auto to continue it, "
                "or use a new experiment.name"
            )
        return state

    def _stages_to_run(self, state: StageState, stage: str | None, resume: str | None) -> list[str]:
        order = list(self.config.training.stages)
        if stage is not None:
            if stage not in order:
                raise RunError(f"--stage {stage!r} is not one of training.stages: {', '.join(order)}")
            return [stage]
        if resume is not None:
            return [s for s in order if s not in state.completed]
        return order

    def _load_previous(self, model: StageModel, state: StageState, first: str) -> None:
        """Replay the final weights of every stage before ``first`` (their modes, then their weights)."""
        order = list(self.config.training.stages)
        self._replay(model, state, order[: order.index(first)], needed_by=first)

    def _replay(self, model: StageModel, state: StageState, stages: list[str], needed_by: str | None = None) -> None:
        for prev in stages:
            if prev not in state.checkpoints:
                raise CheckpointError(
                    f"stage {needed_by!r} needs the weights of stage {prev!r}, but "
                    f"{self.run_dir / 'stage_state.json'} has no completed checkpoint for it: "
                    f"run `cora train --config CFG --stage {prev}` first"
                )
            path = self.run_dir / state.checkpoints[prev]
            model.set_stage(self.config.training.stage_configs[prev])
            load_trainable(model, load_checkpoint(path)["trainable"], path)
            logger.info("loaded stage %s weights from %s", prev, path)

    def _rebuilt_model(self, state: StageState, stages: list[str], needed_by: str | None = None) -> StageModel:
        """A new unsharded model with the final weights of ``stages`` replayed in order.

        Same seed as the run's first model, so the weights no stage trains come out identical; the random
        state is then put back as it was, so what the next stage draws (a LoRA adapter's initial weights)
        is what an unsharded run draws.
        """
        rng = rng_state()
        L.seed_everything(self.config.experiment.seed, workers=True, verbose=False)
        model = self.model_factory(self.config)
        if self.config.training.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        self._replay(model, state, stages, needed_by)
        set_rng_state(rng)
        return model

    def _resume_payload(self, state: StageState, stage: str, resume: str | None, first: bool) -> dict | None:
        if resume is None:
            return None
        if resume == "auto":
            rel = state.last_checkpoint.get(stage)
            return load_checkpoint(self.run_dir / rel) if rel else None
        if not first:
            return None
        payload = load_checkpoint(resume)
        if payload.get("stage") != stage:
            raise RunError(f"--resume {resume}: it is a checkpoint of stage {payload.get('stage')!r}, not of {stage!r}")
        return payload

    # -- run -------------------------------------------------------------------------
    def run(self, stage: str | None = None, resume: str | None = None) -> RunResult:
        cfg = self.config
        state = self._open_state(stage, resume)
        todo = self._stages_to_run(state, stage, resume)
        order = list(cfg.training.stages)
        if resume is not None and resume != "auto":
            first_stage = load_checkpoint(resume).get("stage")
            if first_stage not in order:
                raise RunError(f"--resume {resume}: stage {first_stage!r} is not in training.stages {order}")
            if stage is not None and stage != first_stage:
                raise RunError(f"--resume {resume}: it is a checkpoint of stage {first_stage!r}, not of {stage!r}")
            todo = [stage] if stage else order[order.index(first_stage) :]
        result = RunResult(self.run_dir)
        if not todo:
            logger.info("all stages of %s are complete", self.run_dir)
            return result
        if threads := resolve_threads(cfg.training.num_threads):
            torch.set_num_threads(threads)
        L.seed_everything(cfg.experiment.seed, workers=True, verbose=False)
        model = self.model_factory(cfg)  # before the run folder exists: a model that cannot load leaves none
        if _is_rank_zero():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            state.save(self.run_dir)
        if cfg.training.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        self._load_previous(model, state, todo[0])
        for i, name in enumerate(todo):
            if i > 0 and is_sharded(model):
                # FSDP left the previous stage's model sharded: the next stage shards a fresh copy.
                model = self._rebuilt_model(state, order[: order.index(name)], needed_by=name)
            payload = self._resume_payload(state, name, resume, first=i == 0)
            result.summaries[name] = self._run_stage(model, state, name, payload)
            result.stages_run.append(name)
        if is_sharded(model):  # the result is the unsharded model of the stages up to the last one run
            model = self._rebuilt_model(state, order[: order.index(todo[-1]) + 1])
        result.model = model
        if _is_rank_zero() and self.exporter is not None:
            # The trained model as one loadable folder (generation, evaluation, serving).
            self.exporter(result.model, self.run_dir / "model", cfg)
        if _is_rank_zero():
            write_loss_curves(self.run_dir / "loss_curves.png", {"": self.run_dir}, list(cfg.training.stages))
        return result

    def _run_stage(self, model: StageModel, state: StageState, name: str, payload: dict | None) -> dict[str, Any]:
        cfg = self.config
        stage_cfg = cfg.training.stage_configs[name]
        table = model.set_stage(stage_cfg)
        logger.info("stage %s: component modes\n%s", name, format_table(table or []))
        # An rl stage's reference policy: the weights it starts from, taken before a resume overwrites them.
        reference = (
            {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            if stage_cfg.kind == "rl"
            else None
        )
        if payload is not None:
            self._check_resumable(name, payload)
            load_trainable(model, payload["trainable"], f"resume checkpoint of stage {name}")
            logger.info("stage %s: resuming at step %d/%d", name, payload["step"], payload["total_steps"])
        stage_index = list(cfg.training.stages).index(name)
        if payload is None:
            L.seed_everything(cfg.experiment.seed + stage_index, workers=True, verbose=False)
        data = self.data_factory(cfg, name, stage_cfg, model.tokenizer)
        ckpt_cb = StageCheckpoint(
            self.run_dir, state, cfg.training.checkpoint_every_n_steps, cfg.training.keep_checkpoints
        )
        callbacks: list[L.Callback] = [ckpt_cb, *self.extra_callbacks]
        if not cfg.training.progress_bar:
            callbacks.append(LogLineProgress(cfg.training.log_every_n_steps))
        kwargs: dict[str, Any] = (
            dict(
                accelerator=cfg.training.accelerator,
                devices=cfg.training.devices,
                num_nodes=cfg.training.num_nodes,
                strategy=build_strategy(cfg.training.strategy),
                precision=resolve_precision(cfg.training.precision, cfg.training.accelerator, cfg.training.strategy),
                # FSDP2 cannot run its first forward under inference mode (validation before a feedback
                # stage trains), and Lightning uses it for validation on CUDA: plain no_grad instead.
                inference_mode=cfg.training.strategy != "fsdp",
                max_epochs=1,
                accumulate_grad_batches=stage_cfg.accumulate_grad_batches,
                gradient_clip_val=stage_cfg.grad_clip,
                logger=_build_loggers(cfg, self.run_dir, name) or False,
                callbacks=callbacks,
                enable_checkpointing=False,
                enable_progress_bar=cfg.training.progress_bar,
                enable_model_summary=False,
                log_every_n_steps=cfg.training.log_every_n_steps,
                num_sanity_val_steps=0,
                val_check_interval=cfg.training.val_check_interval,
                use_distributed_sampler=False,
                default_root_dir=str(self.run_dir),
            )
            | self.trainer_kwargs
        )
        trainer = L.Trainer(**kwargs)
        total = plan_total_steps(stage_cfg, len(data.train), trainer.world_size)
        start = int(payload["step"]) if payload else 0
        plan = StagePlan(total_steps=total, start_step=start, seed=cfg.experiment.seed + 1000 * stage_index)
        trainer.fit_loop.epoch_loop.max_steps = total - start
        module = self._stage_module(model, name, data, plan, payload, reference)
        if trainer.is_global_zero:
            state.mark_running(name)
            state.save(self.run_dir)
        if stage_cfg.feedback is not None and payload is None and data.val is not None and len(data.val):
            # A feedback stage reports the held-out metrics before and after it: forgetting is measured.
            trainer.validate(module, verbose=False)
            module.val_before = dict(module.val_metrics)
        t0 = time.perf_counter()
        trainer.fit(module)
        seconds = time.perf_counter() - t0
        # Samples actually trained on (a skipped row is not one); every rank draws a shard of the same size.
        samples = module.samples_seen * trainer.world_size
        summary = {
            "stage": name,
            "steps": total,
            "resumed_at": start,
            "samples": samples,
            "skipped_samples": module.skipped_samples * trainer.world_size,
            **bad_row_totals(data.read_bad_rows, module.bad_rows),
            "seconds": round(seconds, 2),
            "samples_per_s": round(samples / max(seconds, 1e-9), 2),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "train": module.last_train,
            "val": module.val_metrics,
        }
        if module.val_before:
            summary["val_before"] = module.val_before
        final = self.run_dir / "checkpoints" / name / "final.ckpt"
        payload = checkpoint_payload(module, total, complete=True)  # collective when sharded; None on ranks > 0
        # Every rank knows the stage is done (a sharded run's next stage rebuilds its model from final.ckpt).
        state.update_best(name, module.val_metrics)
        state.mark_completed(name, str(final.relative_to(self.run_dir)), module.val_metrics, summary)
        if trainer.is_global_zero:
            save_checkpoint(final, payload)
            state.save(self.run_dir)
            for stale in (self.run_dir / "checkpoints" / name).glob("step-*.ckpt"):
                stale.unlink(missing_ok=True)
        trainer.strategy.barrier("final-checkpoint")
        logger.info(
            "stage %s done: %d steps, %d samples in %.1fs (%.1f samples/s); train %s; val %s",
            name,
            total,
            samples,
            seconds,
            summary["samples_per_s"],
            {k: round(v, 4) for k, v in module.last_train.items()},
            {k: round(v, 4) for k, v in module.val_metrics.items()},
        )
        return summary

    def _check_resumable(self, name: str, payload: dict[str, Any]) -> None:
        """Refuse a mid-stage resume that DeepSpeed is part of: ZeRO partitions the optimiser state across
        ranks and the checkpoint holds rank 0's part only (a torch optimiser state has ``state``)."""
        strategy = self.config.training.strategy
        optimizer = payload.get("optimizer")
        written_by_deepspeed = "DeepSpeed" in str(payload.get("strategy", "")) or not (
            isinstance(optimizer, dict) and "state" in optimizer
        )
        if not strategy.startswith("deepspeed") and not written_by_deepspeed:
            return
        why = (
            f"strategy {strategy} cannot resume in the middle of a stage"
            if strategy.startswith("deepspeed")
            else "this checkpoint was written under DeepSpeed and cannot be resumed in the middle of its stage"
        )
        raise RunError(
            f"stage {name}: {why} (ZeRO partitions the optimiser state across ranks; the checkpoint holds rank "
            f"0's part only): restart the stage with `cora train --config CFG --stage {name}`, or train with "
            "strategy ddp or fsdp, whose runs resume"
        )

    def _stage_module(
        self,
        model: StageModel,
        name: str,
        data: StageData,
        plan: StagePlan,
        payload: dict | None,
        reference: dict[str, torch.Tensor] | None,
    ) -> StageModule:
        cfg = self.config
        stage_cfg = cfg.training.stage_configs[name]
        common: dict[str, Any] = dict(
            resume=payload, blind=cfg.training.blind, num_workers=resolve_workers(cfg.data.num_workers)
        )
        if stage_cfg.kind == "sft":
            return StageModule(model, name, stage_cfg, data, plan, **common)
        from cora.rewards import RewardSettings, build_reward
        from cora.training.grpo import GRPOStageModule

        rl = stage_cfg.rl
        reward = build_reward(
            rl.rewards, rl.default_rewards, RewardSettings(rl.judge, str(self.run_dir / "reward_cache" / name))
        )
        return GRPOStageModule(
            model,
            name,
            stage_cfg,
            data,
            plan,
            reward=reward,
            reference=reference or {},
            stop_token_ids=data.stop_token_ids,
            **common,
        )


def load_run_model(
    config: CoraConfig,
    run_dir: str | Path | None = None,
    model_factory: ModelFactory | None = None,
    allow_incomplete: bool = False,
) -> StageModel:
    """The trained model of a run: build it, then replay every completed stage's modes and weights in order.

    A run whose stages did not all finish (killed, or still training) is an error naming them, unless
    ``allow_incomplete``: then it loads what finished, with a warning naming the last finished stage.
    """
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(config)
    state = StageState.load(run_dir)
    if state is None or not state.completed:
        raise RunError(f"{run_dir} has no completed stage to load (no stage_state.json or nothing completed)")
    stages = list(config.training.stages)
    finished = [s for s in stages if s in state.checkpoints]
    if len(finished) < len(stages):
        missing = [s for s in stages if s not in finished]
        what = (f"{run_dir} finished {len(finished)} of its {len(stages)} stages ({', '.join(finished)}); "
                f"not finished: {', '.join(missing)}")  # fmt: skip
        if not allow_incomplete:
            raise RunError(f"{what}: resume it (`cora train --config {run_dir / 'config.yaml'} --resume auto`), or "
                           "set evaluation.allow_incomplete_run: true to use it as it is")  # fmt: skip
        logger.warning("%s: loading it anyway; last finished stage: %s", what, finished[-1])
    # Same seed as training: weights no stage trains (random-init, frozen) come out identical.
    L.seed_everything(config.experiment.seed, workers=True, verbose=False)
    model = (model_factory or default_model_factory)(config)
    for stage in config.training.stages:
        if stage not in state.checkpoints:
            break
        model.set_stage(config.training.stage_configs[stage])
        path = run_dir / state.checkpoints[stage]
        load_trainable(model, load_checkpoint(path)["trainable"], path)
    model.eval()
    return model


def train(config: CoraConfig, stage: str | None = None, resume: str | None = None, **kwargs: Any) -> RunResult:
    """Train ``config`` (all stages, or ``stage``), resuming with ``resume='auto'`` or a checkpoint path."""
    return StageRunner(config, **kwargs).run(stage=stage, resume=resume)
