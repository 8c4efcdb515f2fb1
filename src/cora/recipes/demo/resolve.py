"""The demo's configs, resolved once before the first step; every step reads only these.

Nothing here assigns to a config: the loaded config stays as it was read, and each resolved
config is a copy of it with its own sections replaced.
"""

from __future__ import annotations

from pathlib import Path

from cora.config.schema import CoraConfig, DemoConfig

# Each unset data path → the file of the generated SynthPano dataset it defaults to.
SYNTH_FILES = {"train": "train.csv", "val": "val.csv", "test": "test.csv", "vision_train": "train_images.csv"}


def resolve_config(config: CoraConfig) -> CoraConfig:
    """``config`` with every unset ``data.train/val/test/vision_train`` pointing at the SynthPano
    dataset the demo generates in ``data.synth.out_dir`` (so the run folder's saved config shows them)."""
    data = config.data
    paths = {
        key: str(Path(data.synth.out_dir) / name) for key, name in SYNTH_FILES.items() if getattr(data, key) is None
    }
    return config.model_copy(update={"data": data.model_copy(update=paths, deep=True)}, deep=True)


def blind_config(config: CoraConfig) -> CoraConfig:
    """The blind ablation of ``config``: same model, data and steps, every pixel zero, and its own
    run folder (experiment ``<name>-blind``)."""
    experiment = config.experiment.model_copy(update={"name": f"{config.experiment.name}-blind"}, deep=True)
    training = config.training.model_copy(update={"blind": True}, deep=True)
    return config.model_copy(update={"experiment": experiment, "training": training}, deep=True)


def demo_settings(config: CoraConfig) -> DemoConfig:
    """The config's ``demo:`` section; a config without one runs the demo with its defaults (priors off)."""
    return config.demo or DemoConfig()
