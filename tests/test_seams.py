"""Where parts meet: the stage runner drives the real native and adapted models through its Protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from cora.config import load_config
from cora.training.runner import train

ROOT = Path(__file__).resolve().parents[1]


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


def test_building_a_model_seeds_its_own_components_without_reseeding_the_callers_rng(tiny_config, kit_paths):
    import torch

    from cora.model import build_model

    models = tiny_config.models.model_copy(
        update={"vision_name": str(kit_paths.vision), "language_model_name": str(kit_paths.language_model)}
    )
    cfg = tiny_config.model_copy(update={"models": models})
    draws, weights = [], []
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        model = build_model(cfg)
        draws.append(torch.rand(4))
        weights.append(model.panorama_projector.state_dict())
    # The caller's stream goes on where it was (a reseeding builder would make both draws equal)...
    assert not torch.equal(draws[0], draws[1])
    # ...and CORA's own components come out the same from the config's seed alone.
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_stage_modes_are_the_models_own_state(tiny_config, kit_paths):
    from cora.model import build_model
    from cora.model.stages import COMPONENTS, StageModes

    models = tiny_config.models.model_copy(
        update={"vision_name": str(kit_paths.vision), "language_model_name": str(kit_paths.language_model)}
    )
    model = build_model(tiny_config.model_copy(update={"models": models}))
    rows = model.set_stage(tiny_config.training.stage_configs["vision"])
    assert [r["component"] for r in rows] == list(COMPONENTS)
    assert model.modes == StageModes("frozen", "full", "full", "unused", "unused")
    assert not model.modes.uses_language_model
    assert all(not p.requires_grad for p in model.language_model.parameters())
    assert all(p.requires_grad for p in model.vicreg_projector.parameters())
    bad = tiny_config.training.stage_configs["vision"].model_copy(update={"resampler": "lora"})
    with pytest.raises(ValueError, match="resampler: mode 'lora' is not supported"):
        model.set_stage(bad)
