"""Load a trained model from a run folder (``runs/<experiment>/``) for inference.

A run folder holds the resolved ``config.yaml`` and ``stage_state.json`` with each
completed stage's checkpoint (only that stage's trainable weights). The model is built
from the config and the stages are replayed in order: each stage's modes, then its
weights, as training itself does before a later stage.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


SAVED_MODEL_MARKER = "cora_model.json"  # written by PanoramaVLM.save_pretrained


class RunLoadError(ValueError):
    """A folder that is not a usable training run."""


def load_run(run_dir: str | os.PathLike[str], config: Any | None = None, device: str | None = None
             ) -> tuple[Any, Any]:
    """``(model, config)`` of a run folder or of a saved model (``PanoramaVLM.save_pretrained``), in eval
    mode on ``device`` (default: CUDA when available)."""
    import torch

    from cora.config import load_config
    from cora.model import build_model
    from cora.training.checkpoint import load_checkpoint, load_trainable
    from cora.training.state import StageState

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if (run / SAVED_MODEL_MARKER).is_file():
        from cora.model import PanoramaVLM

        model = PanoramaVLM.from_pretrained(str(run))
        return model.eval().to(device), config or model.config
    if config is None:
        if not (run / "config.yaml").is_file():
            raise RunLoadError(f"{run}: no config.yaml (is this a run folder written by `cora train`?)")
        config = load_config(run / "config.yaml")
    state = StageState.load(run)
    if state is None or not state.completed:
        raise RunLoadError(f"{run}: no completed training stage in stage_state.json (train it first: "
                           f"`cora train --config {run / 'config.yaml'}`)")
    model = build_model(config)
    for stage in config.training.stages:
        if stage not in state.completed:
            continue
        path = run / state.checkpoints[stage]
        model.set_stage(config.training.stage_configs[stage])
        load_trainable(model, load_checkpoint(path)["trainable"], path)
        logger.info("loaded stage %s from %s", stage, path)
    missing = [s for s in config.training.stages if s not in state.completed]
    if missing:
        logger.warning("%s: stages %s are not completed; generating with the weights so far", run, missing)
    model.eval().to(device)
    return model, config
