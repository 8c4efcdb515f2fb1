"""Where parts meet: the stage runner drives the real native and adapted models through its Protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from cora.config import load_config
from cora.data.synth.dataset import write_synth_dataset
from cora.training.runner import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, n=4, seed=0, width=128, height=64)
    return out


def _one_step(stage: str) -> str:
    return f"""training:
  stages: [{stage}]
  gradient_checkpointing: true
  progress_bar: false
  loggers: [csv]
  stage_configs:
    {stage}: {{max_steps: 1, batch_size: 2, accumulate_grad_batches: 1}}
"""


def _is_checkpointing(hf_model) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) for m in hf_model.modules())


@pytest.mark.slow
def test_runner_turns_on_gradient_checkpointing_of_the_native_model(tmp_path, synth, kit_paths):
    cfg = tmp_path / "native.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n"
        f"experiment: {{name: gc, output_dir: {tmp_path / 'runs'}}}\n"
        f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: null, view_cache: 0}}\n" + _one_step("finetune")
    )
    result = train(load_config(cfg))
    assert result.stages_run == ["finetune"]
    assert _is_checkpointing(result.model.language_model.model)
    assert _is_checkpointing(result.model.vision.tower)


@pytest.mark.slow
def test_runner_turns_on_gradient_checkpointing_of_an_adapted_vlm(tmp_path, synth):
    from cora.adapt.run import train_adapt

    cfg = tmp_path / "adapt.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'adapt-qwen2_5_vl-tiny.yaml'}\n"
        f"experiment: {{name: gc-adapt, output_dir: {tmp_path / 'runs'}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: null}}\n" + _one_step("lora")
    )
    result = train_adapt(load_config(cfg))
    assert result.stages_run == ["lora"]
    assert _is_checkpointing(result.model.adapted.model)
