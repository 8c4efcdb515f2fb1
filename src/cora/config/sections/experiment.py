from __future__ import annotations

from cora.config.base import StrictModel


class ExperimentConfig(StrictModel):
    """Names the run; the run folder is ``<output_dir>/<name>``."""

    name: str = "cora-default"
    seed: int = 42
    output_dir: str = "runs"
    description: str = ""
