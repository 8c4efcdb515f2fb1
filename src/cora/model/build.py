"""Config → :class:`PanoramaVLM`, and saving / loading a trained model (thin functions over its methods)."""

from __future__ import annotations

from pathlib import Path

from cora.config import CoraConfig
from cora.model.vlm import PanoramaVLM


def build_model(cfg: CoraConfig, meta: bool = False) -> PanoramaVLM:
    """The model ``cfg.models`` describes, CORA's own components initialised from ``cfg.experiment.seed``."""
    return PanoramaVLM.from_config(cfg.models, seed=cfg.experiment.seed, meta=meta)


def save_model(model: PanoramaVLM, out_dir: str | Path, run_config: CoraConfig | None = None) -> Path:
    """See :meth:`PanoramaVLM.save_pretrained`."""
    return model.save_pretrained(out_dir, run_config=run_config)


def load_model(path: str | Path, meta: bool = False, allow_base_mismatch: bool = False) -> PanoramaVLM:
    """See :meth:`PanoramaVLM.from_pretrained`."""
    return PanoramaVLM.from_pretrained(path, meta=meta, allow_base_mismatch=allow_base_mismatch)
