"""Config values that used to pass silently: misspelt stage names, booleans as integers, non-finite numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from cora.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def _load(tmp_path: Path, text: str):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n{text}")
    return cfg, lambda: load_config(cfg)


def test_a_misspelt_stage_config_name_is_an_error_with_the_closest_stage(tmp_path):
    cfg, load = _load(tmp_path, "training:\n  stage_configs:\n    finetun: {lr: 1.0e-3}\n")
    with pytest.raises(ConfigError, match=rf"{cfg}: training.stage_configs.finetun: .*did you mean 'finetune'"):
        load()


def test_a_typo_in_the_stage_list_blames_the_file_that_has_it(tmp_path):
    cfg, load = _load(tmp_path, "training:\n  stages: [vision, resampler, finetun]\n")
    with pytest.raises(ConfigError, match=rf"{cfg}: training.stages: .*'finetun'.*did you mean 'finetune'"):
        load()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("training:\n  stage_configs:\n    finetune: {max_steps: true}\n", "training.stage_configs.finetune.max_steps"),
        ("image_processing: {image_size: false}\n", "image_processing.image_size"),
        ("experiment: {seed: true}\n", "experiment.seed"),
    ],
)
def test_booleans_are_not_integers(tmp_path, text, key):
    _cfg, load = _load(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"{key}: .*boolean"):
        load()


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_config_errors(tmp_path, value):
    _cfg, load = _load(tmp_path, f"training:\n  stage_configs:\n    finetune: {{lr: {value}}}\n")
    with pytest.raises(ConfigError, match=r"training.stage_configs.finetune.lr: .*finite"):
        load()


def test_the_shipped_configs_still_load():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)


def test_a_stage_config_for_a_stage_not_run_is_fine(tmp_path):
    _cfg, load = _load(tmp_path, "training:\n  stages: [finetune]\n  stage_configs:\n    warmup: {lr: 1.0e-3}\n")
    assert load().training.stages == ["finetune"]
