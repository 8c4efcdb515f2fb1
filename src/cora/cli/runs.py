"""A trained run's generator for the commands that answer with it (eval, generate, serve).

(A plain module, not a ``*_cmd``.) The CLI is the layer allowed to join inference and
training: a run that has not been exported yet is rebuilt with training's run loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cora.config import CoraConfig

if TYPE_CHECKING:
    from cora.inference.protocols import AnswerGenerator


def panorama_generator(run_dir: str | Path, config: CoraConfig | None = None) -> AnswerGenerator:
    """A CORA run's ``PanoramaGenerator`` (``config`` replaces the run's own around the model)."""
    from cora.inference import PanoramaGenerator
    from cora.training.runner import load_run_model

    def run_loader(run_config: CoraConfig, run: Path):  # -> PanoramaVLM
        allow = (config or run_config).evaluation.allow_incomplete_run
        return load_run_model(run_config, run, allow_incomplete=allow)

    return PanoramaGenerator.from_run(run_dir, config=config, run_loader=run_loader)


def run_generator(run_dir: str | Path, config: CoraConfig | None = None) -> AnswerGenerator:
    """An ``AdaptGenerator`` for an adapted off-the-shelf VLM run (its ``config.yaml`` has an
    ``adapt:`` section), else :func:`panorama_generator`."""
    from cora.config import load_config

    run_config = Path(run_dir) / "config.yaml"
    if run_config.is_file() and load_config(run_config).adapt is not None:
        from cora.adapt.generator import AdaptGenerator

        return AdaptGenerator.from_run(run_dir, config=config)
    return panorama_generator(run_dir, config)
