"""``cora train`` as a new user meets it: a kit config from a clean folder, a missing model, a logger whose
package is missing, a run that failed before training, the hyperparameters and loss curves it writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from cora.cli.main import main

TINY_TRAINING = (
    "training:\n  stages: [resampler]\n  stage_configs:\n"
    "    resampler: {max_steps: 2, batch_size: 2, accumulate_grad_batches: 1}\n"
)


def test_train_on_a_packaged_kit_config_from_a_clean_folder(tmp_path, monkeypatch, capsys):
    """`extends: tiny.yaml` (the packaged config) in an empty folder: the data, the kit and the priors the
    config enables are prepared first, then the stage trains; hyperparameters and loss curves are written."""
    monkeypatch.chdir(tmp_path)
    Path("mine.yaml").write_text(
        "extends: tiny.yaml\nexperiment: {name: mine}\n"
        "data: {synth: {n: 12, width: 128}, view_cache: 0}\n"
        "demo:\n  language_prior: {enabled: false}\n  vision_prior: {steps: 2, batch_size: 8}\n" + TINY_TRAINING
    )
    assert main(["train", "--config", "mine.yaml"]) == 0
    out = capsys.readouterr().out
    assert "prepare: SynthPano data: SynthPano at .cora/synth" in out
    assert "prepare: model kit: kit at .cora/kit" in out
    assert "prepare: language prior: skipped (demo.language_prior.enabled is false)" in out
    assert "prepare: vision prior: 2 steps" in out
    run = tmp_path / "runs" / "mine"
    params = yaml.safe_load((run / "logs" / "resampler" / "hparams.yaml").read_text())
    assert params["experiment.name"] == "mine" and params["stage"] == "resampler"
    assert params["training.stage_configs.resampler.max_steps"] == 2
    assert (run / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    # a second run of the same preparation keeps what is there
    Path("mine.yaml").write_text(Path("mine.yaml").read_text().replace("name: mine", "name: again"))
    assert main(["train", "--config", "mine.yaml"]) == 0
    assert "prepare: vision prior: up to date" in capsys.readouterr().out


def test_a_missing_local_model_is_one_line_naming_it_and_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text(
        "extends: default.yaml\nexperiment: {name: nomodel}\n"
        "models: {vision_name: ./models/vision, language_model_name: ./models/lm}\n"
    )
    assert main(["train", "--config", "c.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "models.vision_name: ./models/vision does not exist" in err
    assert not (tmp_path / "runs").exists()


def test_a_run_that_failed_before_training_does_not_block_the_corrected_config(tmp_path, kit_paths, synth):
    from cora.config import load_config
    from cora.data.records import DataError
    from cora.training.runner import train

    root = Path(__file__).resolve().parents[1]

    def config(train_csv: Path) -> Path:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            f"extends: {root / 'configs' / 'tiny.yaml'}\n"
            f"experiment: {{name: fixed, output_dir: {tmp_path / 'runs'}}}\n"
            f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
            f"data: {{train: {train_csv}, val: null, view_cache: 0}}\n" + TINY_TRAINING
        )
        return cfg

    with pytest.raises((DataError, FileNotFoundError, ValueError)):
        train(load_config(config(tmp_path / "missing.csv")))
    assert (tmp_path / "runs" / "fixed" / "config.yaml").is_file()  # the model loaded: the folder exists
    result = train(load_config(config(synth / "train.csv")))  # another config, same folder: it starts afresh
    assert result.stages_run == ["resampler"]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_logger_without_its_package_is_refused_before_anything_runs(tmp_path, capsys):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(
        f"extends: tiny.yaml\nexperiment: {{name: w, output_dir: {tmp_path}}}\ntraining: {{loggers: [csv, wandb]}}\n"
    )
    assert main(["config", "validate", str(cfg)]) == 2
    assert "pip install 'cora[wandb]'" in capsys.readouterr().err
    assert main(["train", "--config", str(cfg)]) == 2
    assert "training.loggers lists 'wandb'" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_wandb_logs_every_stage_of_a_run_into_one_wandb_run(tmp_path, tiny_config, monkeypatch):
    """The factory's arguments (wandb itself is not needed): one id per run folder, stages as prefixes."""
    import cora.training.loggers as loggers

    made = []
    monkeypatch.setattr(loggers, "_require", lambda name: None)
    monkeypatch.setattr(loggers, "WandbLogger", lambda **kw: made.append(kw))
    for stage in ("vision", "finetune"):
        loggers.wandb_logger(tiny_config, tmp_path / "run", stage)
    loggers.wandb_logger(tiny_config, tmp_path / "other", "vision")
    assert made[0]["id"] == made[1]["id"] != made[2]["id"]
    assert [m["prefix"] for m in made[:2]] == ["vision", "finetune"]
    assert made[0]["resume"] == "allow" and made[0]["name"] == tiny_config.experiment.name
