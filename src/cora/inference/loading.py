"""Load a trained model for inference: a saved model folder or a training run folder.

- a folder written by ``PanoramaVLM.save_pretrained`` (``cora_model.json``, its
  ``config.yaml``, the non-frozen weights), or a run folder holding one in ``model/``
  (``cora train`` writes it at the end of a run);
- otherwise a run folder (``runs/<experiment>/``: ``config.yaml`` and ``stage_state.json``)
  whose stages have not been exported yet: the caller passes ``run_loader`` (the CLI passes
  training's :func:`cora.training.runner.load_run_model`, which rebuilds the model and replays
  every completed stage). Inference itself imports only the model package: the run folder's
  checkpoint format is training's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cora.model.vlm import SAVED_CONFIG, saved_model_dir

logger = logging.getLogger(__name__)


class RunLoadError(ValueError):
    """A folder that is neither a saved model nor a usable training run."""


RunLoader = Callable[[Any, Path], Any]  # (run config, run folder) -> model


def load_run(
    run_dir: str | os.PathLike[str],
    config: Any | None = None,
    device: str | None = None,
    run_loader: RunLoader | None = None,
) -> tuple[Any, Any]:
    """``(model, config)`` in eval mode on ``device`` (default: CUDA when available).

    ``config`` (optional) replaces the run's own for what surrounds the model (views, prompt,
    decoding); the architecture always comes from the saved model or run.
    """
    import torch

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    saved = saved_model_dir(run)
    if saved is not None:
        from cora.config import load_config
        from cora.model import load_model

        model = load_model(saved)
        logger.info("loaded the saved model in %s", saved)
        # The model keeps only its own section; views, prompt and decoding come from the saved run config.
        return model.eval().to(device), config or load_config(saved / SAVED_CONFIG)
    from cora.config import load_config

    if not (run / "config.yaml").is_file():
        raise RunLoadError(f"{run}: no config.yaml and no saved model (is this a run folder written by `cora train`?)")
    if run_loader is None:
        raise RunLoadError(
            f"{run}: no exported model in {run / 'model'} (`cora train` writes it when a run "
            f"finishes; resume with `cora train --config {run / 'config.yaml'} --resume auto`)"
        )
    run_config = load_config(run / "config.yaml")
    model = run_loader(run_config, run)  # its own errors name the stage or checkpoint at fault
    return model.eval().to(device), config or run_config
