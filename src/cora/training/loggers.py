"""Experiment loggers, named in ``cora.registry.LOGGERS`` (``training.loggers``).

Each factory takes ``(config, run_dir, stage)`` and returns a Lightning logger writing under
``<run>/logs/<stage>/``. Adding one = a factory here + one line in the registry.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from cora.config import CoraConfig


class LoggerUnavailable(RuntimeError):
    """A logger named in ``training.loggers`` whose package is not installed."""


#: logger name -> (the module it needs, the extra that installs it)
NEEDS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "cora[tensorboard]"),
    "wandb": ("wandb", "cora[wandb]"),
}


def missing_logger_packages(names: list[str]) -> list[str]:
    """One line per logger of ``names`` whose package is not installed (``cora config validate`` and
    ``cora train`` say so before anything runs)."""
    problems = []
    for name in names:
        module, extra = NEEDS.get(name, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            problems.append(
                f"training.loggers lists {name!r} but {module} is not installed: pip install '{extra}' "
                f"(or remove it from training.loggers)"
            )
    return problems


def _require(logger: str) -> None:
    if problems := missing_logger_packages([logger]):
        raise LoggerUnavailable(problems[0])


def hyperparameters(config: CoraConfig) -> dict[str, Any]:
    """The resolved config, flattened to ``section.key`` names (what the loggers record as hyperparameters)."""
    flat: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(child, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = value if isinstance(value, int | float | str | bool) or value is None else str(value)

    walk(config.model_dump(mode="json"), "")
    return flat


def csv_logger(config: CoraConfig, run_dir: Path, stage: str) -> Logger:
    return CSVLogger(run_dir / "logs", name=stage, version="")


def tensorboard_logger(config: CoraConfig, run_dir: Path, stage: str) -> Logger:
    _require("tensorboard")
    return TensorBoardLogger(run_dir / "logs", name=stage, version="tensorboard")


def wandb_logger(config: CoraConfig, run_dir: Path, stage: str) -> Logger:
    """One W&B run per training run: every stage logs into it (its metrics prefixed by the stage; W&B steps
    by its own counter, Lightning's global step as ``trainer/global_step``), grouped by experiment; a
    resumed run continues the same W&B run (its id comes from the run folder)."""
    _require("wandb")
    run_id = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return WandbLogger(
        project=config.training.wandb_project or "cora",
        name=config.experiment.name,
        id=f"{config.experiment.name}-{run_id}",
        resume="allow",
        group=config.experiment.name,
        prefix=stage,
        save_dir=str(run_dir / "logs"),
    )
