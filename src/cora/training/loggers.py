"""Experiment loggers, named in ``cora.registry.LOGGERS`` (``training.loggers``).

Each factory takes ``(config, run_dir, stage)`` and returns a Lightning logger writing under
``<run>/logs/<stage>/``. Adding one = a factory here + one line in the registry.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from cora.config import CoraConfig


class LoggerUnavailable(RuntimeError):
    """A logger named in ``training.loggers`` whose package is not installed."""


def _require(module: str, logger: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise LoggerUnavailable(
            f"training.loggers lists {logger!r} but {module} is not installed: pip install {extra} "
            f"(or remove it from training.loggers)"
        )


def csv_logger(config: CoraConfig, run_dir: Path, stage: str) -> Logger:
    return CSVLogger(run_dir / "logs", name=stage, version="")


def tensorboard_logger(config: CoraConfig, run_dir: Path, stage: str) -> Logger:
    _require("tensorboard", "tensorboard", "tensorboard")
    return TensorBoardLogger(run_dir / "logs", name=stage, version="tensorboard")


def wandb_logger(config: CoraConfig, run_dir: Path, stage: str) -> Logger:
    _require("wandb", "wandb", "wandb")
    return WandbLogger(
        project=config.training.wandb_project or "cora",
        name=f"{config.experiment.name}-{stage}",
        save_dir=str(run_dir / "logs"),
    )
