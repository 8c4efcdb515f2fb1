from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cora.config import ConfigError, CoraConfig, config_to_yaml, load_config
from cora.config.schema import REFERENCE_STAGES

from .conftest import CONFIGS


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_config_is_the_reference_design() -> None:
    cfg = load_config(CONFIGS / "default.yaml")
    assert cfg.models.vision_name == "google/siglip2-so400m-patch16-256"
    assert cfg.models.language_model_name == "Qwen/Qwen3-0.6B"
    assert cfg.models.resampler_type == "bimamba"
    assert cfg.image_processing.crop_strategy == "anyres_e2p"
    assert cfg.image_processing.fov_deg == 90 and cfg.image_processing.overlap_ratio == 0.5
    stages = cfg.training.stage_configs
    assert cfg.training.stages == ["vision", "resampler", "finetune"]
    assert stages["vision"].vision_trainable_blocks == 2 and stages["vision"].lr == 5e-4
    assert stages["resampler"].overlap_loss_weight == 0.1 and stages["resampler"].accumulate_grad_batches == 8
    assert stages["finetune"].language_model == "lora"
    assert stages["finetune"].lora is not None and (stages["finetune"].lora.r, stages["finetune"].lora.alpha) == (
        32,
        64,
    )


def test_every_shipped_config_loads() -> None:
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert isinstance(load_config(path), CoraConfig), path


def test_tiny_extends_default_and_overrides(tiny_config) -> None:
    assert tiny_config.experiment.name == "cora-tiny"
    assert tiny_config.image_processing.image_size == 64
    assert tiny_config.image_processing.crop_strategy == "anyres_e2p"  # inherited
    assert tiny_config.kit is not None and tiny_config.kit.vision.model_type == "siglip_vision_model"


def test_resolved_yaml_round_trips(tmp_path: Path, tiny_config) -> None:
    out = tmp_path / "resolved.yaml"
    out.write_text(config_to_yaml(tiny_config))
    assert load_config(out) == tiny_config


def test_partial_stage_override_keeps_the_reference_preset(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.yaml", {"training": {"stage_configs": {"vision": {"lr": 1e-3}}}}))
    vision = cfg.training.stage_configs["vision"]
    assert vision.lr == 1e-3
    assert vision.vision_trainable_blocks == REFERENCE_STAGES["vision"]["vision_trainable_blocks"]
    assert set(cfg.training.stage_configs) >= {"vision", "resampler", "finetune"}


def test_extends_list_later_wins_and_paths_are_relative(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "a.yaml", {"experiment": {"name": "a", "seed": 1}})
    write(tmp_path / "sub" / "b.yaml", {"experiment": {"name": "b"}})
    child = write(tmp_path / "sub" / "child.yaml", {"extends": ["a.yaml", "b.yaml"], "data": {"num_workers": 0}})
    cfg = load_config(child)
    assert (cfg.experiment.name, cfg.experiment.seed, cfg.data.num_workers) == ("b", 1, 0)


def test_typo_names_file_dotted_key_and_suggestion(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", {"training": {"stage_configs": {"vision": {"lrr": 0.1}}}})
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml", "experiment": {"name": "x"}})
    with pytest.raises(ConfigError) as err:
        load_config(child)
    msg = str(err.value)
    # The typo lives in the base file: the message must point there, not at the child.
    assert f"{base}: training.stage_configs.vision.lrr: unknown key (did you mean 'lr'?)" in msg


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {"image_processing": {"image_size": "big"}})
    with pytest.raises(ConfigError, match=r"c\.yaml: image_processing\.image_size: .*integer.*'big'"):
        load_config(path)


def test_invalid_choice_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {"image_processing": {"crop_strategy": "fisheye"}})
    with pytest.raises(ConfigError, match="crop_strategy.*anyres_e2p"):
        load_config(path)


def test_stage_without_config_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {"training": {"stages": ["vision", "polish"]}})
    with pytest.raises(ConfigError, match=r"polish"):
        load_config(path)


def test_extends_cycle_names_the_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"extends": ["c.yaml"]})
    write(tmp_path / "c.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.yaml")
    assert str(err.value) == (
        f"extends cycle: {tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'c.yaml'} -> "
        f"{tmp_path / 'a.yaml'}"
    )


def test_missing_base_names_the_child(tmp_path: Path) -> None:
    child = write(tmp_path / "c.yaml", {"extends": "nope.yaml"})
    with pytest.raises(ConfigError, match=rf"nope\.yaml: config file not found \(extended by {child}\)"):
        load_config(child)


def test_non_mapping_and_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_auto_threads_and_workers_follow_the_cpus_a_process_may_use(monkeypatch):
    from cora.utils.machine import resolve_threads, resolve_workers, usable_cpus

    monkeypatch.setenv("CORA_CPUS", "2")
    assert (usable_cpus(), resolve_threads("auto"), resolve_workers("auto")) == (2, 2, 1)
    monkeypatch.setenv("CORA_CPUS", "16")
    assert (resolve_threads("auto"), resolve_workers("auto")) == (16, 4)  # workers capped at 4
    monkeypatch.setenv("CORA_CPUS", "1")  # one of two demo jobs on two cores
    assert (resolve_threads("auto"), resolve_workers("auto")) == (1, 0)
    assert (resolve_threads(None), resolve_threads(3), resolve_workers(2)) == (None, 3, 2)
    from cora.config import load_config

    cfg = load_config(CONFIGS / "tiny.yaml")
    assert (cfg.training.num_threads, cfg.data.num_workers) == ("auto", "auto")


def test_extends_names_the_file_beside_the_config_or_the_packaged_one_never_the_working_directory(
    tmp_path, monkeypatch
):
    """A config means the same from any folder: a `tiny.yaml` in the working directory is not what another
    folder's `extends: tiny.yaml` names."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (elsewhere / "tiny.yaml").write_text("experiment: {name: FROM_CWD}\n")
    (elsewhere / "base.yaml").write_text("experiment: {name: ALSO_CWD}\n")
    (project / "mine.yaml").write_text("extends: tiny.yaml\n")
    monkeypatch.chdir(elsewhere)
    assert load_config(project / "mine.yaml").experiment.name == "cora-tiny"  # the packaged tiny.yaml
    (project / "other.yaml").write_text("extends: base.yaml\n")
    with pytest.raises(ConfigError, match=f"{project / 'base.yaml'}: config file not found"):
        load_config(project / "other.yaml")
