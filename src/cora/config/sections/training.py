from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from cora.config.base import StrictModel, registered
from cora.config.sections.evaluation import JudgeConfig
from cora.registry import LOGGERS, LOSSES, REWARDS, closest

Mode = Literal["frozen", "full", "lora", "unused"]
Pairing = Literal["columns", "exact"]


class LossConfig(StrictModel):
    """The overlap loss of stage 1 (and stage 2's auxiliary term)."""

    type: registered(LOSSES) = "vicreg"
    overlap_columns: int | None = Field(None, ge=1, description="k strip columns; None: 25% of grid width")
    pairing: Pairing = Field(
        "columns",
        description="how strip tokens of neighbouring tiles are paired: columns (same row index, exact in "
        "longitude on the middle row) or exact (each token's direction sampled in the neighbour's grid in 2-D)",
    )
    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0
    temperature: float = Field(0.07, gt=0.0)


class LoRAConfig(StrictModel):
    r: int = Field(32, ge=1)
    alpha: int = Field(64, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class RLConfig(StrictModel):
    """GRPO settings of a ``kind: rl`` stage (docs/ARCHITECTURE.md, "Reinforcement fine-tuning")."""

    group_size: int = Field(4, ge=2, description="answers sampled per prompt (G); advantages are relative to them")
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(32, ge=1)
    beta: float = Field(0.04, ge=0.0, description="weight of the KL penalty to the stage's starting policy")
    epsilon: float = Field(0.2, gt=0.0, lt=1.0, description="clip range of the policy ratio")
    iterations: int = Field(
        1, ge=1, description="optimiser steps on each batch of sampled answers (>1: the ratio moves and clips)"
    )
    scale_rewards: bool = Field(True, description="divide advantages by the group's reward std")
    rewards: dict[str, list[registered(REWARDS)]] = Field(
        default_factory=dict, description="question type -> reward names (their mean); others use default_rewards"
    )
    default_rewards: list[registered(REWARDS)] = ["exact_match"]
    judge: JudgeConfig | None = Field(None, description="endpoint of the 'judge' reward")
    exclude_types: list[str] = Field(
        ["caption"], description="question types the stage does not train on (no checkable answer)"
    )

    @model_validator(mode="after")
    def _judge_configured(self) -> RLConfig:
        self.rewards.setdefault("feedback", ["feedback"])  # feedback rows: scored by their ratings
        wanted = {n for names in [*self.rewards.values(), self.default_rewards] for n in names}
        if "judge" in wanted and self.judge is None:
            raise PydanticCustomError(
                "judge_missing", "the 'judge' reward needs rl.judge (url, model)", {"key": "judge"}
            )
        if not self.default_rewards or any(not names for names in self.rewards.values()):
            raise PydanticCustomError("no_reward", "every question type needs at least one reward", {"key": "rewards"})
        return self


class StageConfig(StrictModel):
    """One training stage: which component trains how, and its optimisation.

    ``kind: sft`` learns from the reference answers (likelihood, and/or the overlap loss);
    ``kind: rl`` samples answers and learns from their rewards (GRPO, settings under ``rl``).
    """

    kind: Literal["sft", "rl"] = "sft"
    vision_trainable_blocks: int = Field(0, ge=-1, description="0 frozen, N last N blocks, -1 all")
    resampler: Mode = "full"
    vicreg_projector: Mode = "unused"
    panorama_projector: Mode = "full"
    language_model: Mode = "frozen"
    lm_loss_weight: float = 1.0
    overlap_loss_weight: float = 0.0
    loss: LossConfig = LossConfig()
    lora: LoRAConfig | None = None
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    batch_size: int = Field(1, ge=1)
    accumulate_grad_batches: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    rl: RLConfig = RLConfig()
    feedback: str | None = Field(
        None,
        description="a feedback JSONL (image, query, answer, rating and/or correction) the stage trains on "
        "instead of data.train: corrections in an sft stage, ratings in an rl stage",
    )
    replay: float = Field(
        0.0, ge=0.0, lt=1.0, description="feedback stages: share of their rows drawn from data.train (replay)"
    )

    @model_validator(mode="after")
    def _rl_stage(self) -> StageConfig:
        if self.kind == "rl" and (self.overlap_loss_weight > 0 or self.language_model == "unused"):
            raise PydanticCustomError(
                "rl_stage",
                "a kind: rl stage learns from sampled answers only: it needs the language model (not 'unused') "
                "and overlap_loss_weight 0",
                {"key": "kind"},
            )
        if self.kind == "rl" and self.rl.iterations > 1 and self.accumulate_grad_batches > 1:
            raise PydanticCustomError(
                "rl_stage",
                "rl.iterations > 1 (several steps per batch of answers) needs accumulate_grad_batches 1",
                {"key": "rl"},
            )
        return self


# The reference stage table (docs/ARCHITECTURE.md, "Stages"): the presets every config starts from.
REFERENCE_STAGES: dict[str, dict[str, Any]] = {
    "vision": {
        "vision_trainable_blocks": 2,
        "resampler": "full",
        "vicreg_projector": "full",
        "panorama_projector": "unused",
        "language_model": "unused",
        "lm_loss_weight": 0.0,
        "overlap_loss_weight": 1.0,
        "lr": 5e-4,
        "batch_size": 16,
    },
    "resampler": {
        "vision_trainable_blocks": 0,
        "resampler": "full",
        "vicreg_projector": "frozen",
        "panorama_projector": "full",
        "language_model": "frozen",
        "overlap_loss_weight": 0.1,
        "lr": 1e-4,
        "batch_size": 4,
        "accumulate_grad_batches": 8,
    },
    "finetune": {
        "vision_trainable_blocks": 0,
        "resampler": "frozen",
        "vicreg_projector": "unused",
        "panorama_projector": "full",
        "language_model": "lora",
        "lora": {},
        "lr": 5e-5,
        "batch_size": 4,
    },
}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class TrainingConfig(StrictModel):
    """Stages, per-stage settings and the training engine (docs/ARCHITECTURE.md, "Stages")."""

    stages: list[str] = ["vision", "resampler", "finetune"]
    stage_configs: dict[str, StageConfig] = Field(default_factory=dict)
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "auto"
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed_stage_2"] = "auto"
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1, description="machines in a multi-node run (devices is per machine)")
    gradient_checkpointing: bool = False
    log_every_n_steps: int = Field(10, ge=1)
    checkpoint_every_n_steps: int = Field(200, ge=1)
    val_check_interval: float | int = 1.0
    loggers: list[registered(LOGGERS)] = ["csv"]  # tensorboard, wandb: their extras
    wandb_project: str | None = None
    keep_checkpoints: int = Field(2, ge=1, description="intermediate checkpoints kept per stage (final always kept)")
    num_threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None,
        description="torch CPU threads (None: torch's default; auto: every CPU this process may use, "
        "CORA_CPUS when a demo or sweep runs several jobs at once)",
    )
    progress_bar: bool = Field(True, description="live bar with loss, lr, samples/s (off: one log line per step)")
    blind: bool = Field(False, description="ablation: every pixel value is zero, the model sees no image")
    feature_cache: Literal["none", "memory", "disk"] = Field(
        "memory",
        description="stages with a frozen tower reuse each panorama's tower features: in memory (the last "
        "feature_cache_items panoramas), or also on disk under <run>/cache/tower",
    )
    feature_cache_items: int = Field(512, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _start_from_reference_stages(cls, data: Any) -> Any:
        # A user's `stage_configs.vision.lr: 1e-3` changes one number of the
        # reference preset instead of replacing the whole preset.
        if not isinstance(data, dict):
            return data
        given = data.get("stage_configs") or {}
        if not isinstance(given, dict):
            return data
        merged = {name: dict(preset) for name, preset in REFERENCE_STAGES.items()}
        for name, over in given.items():
            merged[name] = _deep_merge(merged.get(name, {}), over) if isinstance(over, dict) else over
        return {**data, "stage_configs": merged}

    @model_validator(mode="after")
    def _stages_are_configured(self) -> TrainingConfig:
        # Errors carry the key at fault (ctx "key"), so the loader blames the file that set that key.
        missing = [s for s in self.stages if s not in self.stage_configs]
        if missing:
            context = {
                "key": "stages",
                "missing": ", ".join(map(repr, missing)),
                "verb": "has" if len(missing) == 1 else "have",
                "hint": closest(missing[0], self.stage_configs, n=1),
                "known": ", ".join(self.stage_configs),
            }
            raise PydanticCustomError(
                "unknown_stage", "{missing} {verb} no stage config{hint}; configured stages: {known}", context
            )
        # A config for a stage this run does not use is fine (a base config may define more stages than a
        # derived one runs); one whose name is a near miss of a used or reference stage is a typo.
        known = [*self.stages, *(s for s in REFERENCE_STAGES if s not in self.stages)]
        typos = [
            (name, hint) for name in self.stage_configs if name not in known and (hint := closest(name, known, n=1))
        ]
        if self.strategy == "fsdp" and self.precision == "16-mixed":
            raise PydanticCustomError(
                "fsdp_fp16",
                "strategy fsdp runs without fp16 loss scaling (Lightning refuses it): use precision bf16-mixed, "
                "32, or auto (bf16 where the GPU has it, else 32)",
                {"key": "precision"},
            )
        rl = [s for s in self.stages if self.stage_configs[s].kind == "rl"]
        if self.strategy == "fsdp" and rl:
            raise PydanticCustomError(
                "fsdp_rl",
                "strategy fsdp trains sft stages only; {stage} is an rl stage: run it with strategy ddp or auto "
                "(`cora train --stage {stage}` with another config resumes from the run's earlier stages)",
                {"key": "strategy", "stage": rl[0]},
            )
        if typos:
            name, hint = typos[0]
            raise PydanticCustomError(
                "unknown_stage_config",
                "'{name}' is neither in training.stages nor a reference stage{hint}; stages: {known}",
                {"key": f"stage_configs.{name}", "name": name, "hint": hint, "known": ", ".join(known)},
            )
        return self
