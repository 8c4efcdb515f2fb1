"""The adapt: config section and the example config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cora.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads():
    cfg = load_config(ROOT / "configs" / "adapt-qwen2_5_vl-tiny.yaml")
    assert cfg.adapt.family == "qwen2_5_vl" and cfg.adapt.tiny and cfg.adapt.input_mode == "anyres_e2p"
    assert cfg.training.stages == ["aligner", "lora"]
    assert cfg.training.stage_configs["lora"].language_model == "lora"
    assert cfg.training.stage_configs["aligner"].overlap_loss_weight == 0.1
    assert cfg.adapt.lora.target_modules == ["all-linear"]


def test_adapt_section_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapt: {family: qwen2_5_vl, tiny: true, input_mode: equirect}\n")
    with pytest.raises(ConfigError, match="adapt.input_mode"):
        load_config(bad)
    bad.write_text("adapt: {family: qwen2_5_vl}\n")
    with pytest.raises(ConfigError, match="adapt.model_name is required"):
        load_config(bad)
    bad.write_text("adapt: {family: qwen2_5_vl, tiny: true, panoroep: false}\n")
    with pytest.raises(ConfigError, match="panoroep"):
        load_config(bad)
