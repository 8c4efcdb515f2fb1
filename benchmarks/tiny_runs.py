"""What the training benchmarks share: a SynthPano set and a tiny kit in a temp folder, and run configs that
extend the tiny config with a few settings (``bench_cores``, ``bench_demo_resampler``, ``bench_fsdp``)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cora.config import load_config  # noqa: E402
from cora.data.synth.dataset import write_synth_dataset  # noqa: E402
from cora.kit import KitPaths, build_kit  # noqa: E402


def prepare(prefix: str, panoramas: int) -> tuple[Path, KitPaths]:
    """A temp folder holding ``synth/`` (``panoramas`` SynthPano panoramas, 512×256) and the tiny ``kit/``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    write_synth_dataset(tmp / "synth", n=panoramas, seed=0, width=512, height=256)
    return tmp, build_kit(load_config(ROOT / "configs" / "tiny.yaml").kit, out_dir=tmp / "kit", seed=0)


def run_config(
    tmp: Path,
    kit: KitPaths,
    name: str,
    training: dict[str, Any],
    models: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """``tmp/<name>.yaml``: the tiny config on ``prepare``'s data and kit (no validation set, a small view
    cache, csv logs, no progress bar), experiment ``name``, with ``training``/``models``/``data`` on top."""
    config = {
        "extends": str(ROOT / "configs" / "tiny.yaml"),
        "experiment": {"name": name, "output_dir": str(tmp / "runs")},
        "models": {"vision_name": str(kit.vision), "language_model_name": str(kit.language_model)} | (models or {}),
        "data": {"train": str(tmp / "synth" / "train.csv"), "val": None, "view_cache": 64} | (data or {}),
        "training": {"loggers": ["csv"], "progress_bar": False} | training,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
