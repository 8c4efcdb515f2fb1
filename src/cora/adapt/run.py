"""Adapt runs on the project's stage runner: run folder, ``stage_state.json``, resume, logging, checkpoints.

``train_adapt(config)`` trains ``training.stages`` of a config with an ``adapt:`` section;
``load_adapt_run(run_dir)`` rebuilds the trained model (base + every completed stage's weights, replayed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cora.adapt.data import build_adapt_stage_data
from cora.adapt.families import AdaptConfigError
from cora.adapt.health import HealthCheckError
from cora.adapt.runtime import PanoramaAdapter, build_adapter
from cora.config import CoraConfig, load_config
from cora.config.sections.training import StageConfig
from cora.data.records import DataError
from cora.training.module import StageData
from cora.training.runner import RunError, RunResult, StageRunner, load_run_model


class _Factories:
    """Model and data factories sharing the built model (the data needs its processor)."""

    def __init__(self) -> None:
        self.model: PanoramaAdapter | None = None

    def model_factory(self, config: CoraConfig) -> PanoramaAdapter:
        self.model = build_adapter(config)
        return self.model

    def data_factory(self, config: CoraConfig, stage: str, stage_cfg: StageConfig, tokenizer: Any) -> StageData:
        assert self.model is not None, "the runner builds the model before the data"
        return build_adapt_stage_data(config, stage, stage_cfg, self.model.family, self.model.processor)


def train_adapt(
    config: CoraConfig, stage: str | None = None, resume: str | None = None, **runner_kwargs: Any
) -> RunResult:
    if config.adapt is None:
        raise ValueError("train_adapt needs a config with an adapt: section")
    factories = _Factories()
    runner = StageRunner(
        config, model_factory=factories.model_factory, data_factory=factories.data_factory, **runner_kwargs
    )
    try:
        return runner.run(stage=stage, resume=resume)
    except (AdaptConfigError, HealthCheckError, DataError) as exc:
        raise RunError(str(exc)) from exc


def load_adapt_run(
    run_dir: str | Path, config: CoraConfig | None = None, allow_incomplete: bool = False
) -> PanoramaAdapter:
    """The adapted model of a run: the base, then each completed stage's recipe and trained weights in order
    (training's own replay, with the adapt model factory); a run with unfinished stages only when
    ``allow_incomplete``."""
    run = Path(run_dir)
    config = config or load_config(run / "config.yaml")
    return load_run_model(config, run, model_factory=build_adapter, allow_incomplete=allow_incomplete)
