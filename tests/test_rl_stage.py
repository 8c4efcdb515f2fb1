"""The ``rl`` stage in the stage runner on the tiny native model: its reference, its logs, exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from cora.config import load_config
from cora.training.checkpoint import load_checkpoint
from cora.training.runner import train
from tests.ddp_util import run_two_ranks

ROOT = Path(__file__).resolve().parents[1]


def rl_config(tmp_path: Path, kit_paths, synth: Path, name: str = "rl", iterations: int = 2) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n"
        f"experiment: {{name: {name}, output_dir: {tmp_path / 'runs'}}}\n"
        f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: {synth / 'val.csv'}, view_cache: 0}}\n"
        "training:\n"
        "  stages: [finetune, rl]\n"
        "  progress_bar: false\n"
        "  loggers: [csv]\n"
        "  log_every_n_steps: 1\n"
        "  checkpoint_every_n_steps: 1\n"
        "  stage_configs:\n"
        "    finetune: {max_steps: 2, batch_size: 2}\n"
        "    rl:\n"
        "      kind: rl\n"
        "      lm_loss_weight: 0.0\n"
        "      language_model: lora\n"
        "      resampler: frozen\n"
        "      max_steps: 4\n"
        "      batch_size: 2\n"
        "      lr: 1.0e-2\n"
        f"      rl: {{group_size: 3, max_new_tokens: 6, iterations: {iterations}, beta: 0.1,\n"
        "           rewards: {count: [numeric, format]}}\n"
    )
    return cfg


class Capture(L.Callback):
    """Keeps the rl module's reference copy and its first step's logged values."""

    def __init__(self) -> None:
        self.reference: dict[str, torch.Tensor] | None = None
        self.first: dict[str, float] | None = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.stage_name == "rl" and self.first is None:
            self.reference = {k: v.clone() for k, v in module.reference.items()}
            self.first = dict(module.last_train)


class Crash(L.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.stage_name == "rl" and module.plan.start_step + trainer.global_step >= self.at:
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_rl_stage_starts_from_the_previous_stage_and_learns_against_it(tmp_path, kit_paths, synth):
    capture = Capture()
    result = train(load_config(rl_config(tmp_path, kit_paths, synth)), callbacks=[capture])
    run = result.run_dir
    finetune = load_checkpoint(run / "checkpoints/finetune/final.ckpt")["trainable"]
    # The reference policy is exactly where stage 3 left the weights the rl stage trains (LoRA, projector).
    assert capture.reference and set(capture.reference) <= set(finetune)
    assert any("lora_" in name for name in capture.reference)
    for name, tensor in capture.reference.items():
        assert torch.equal(tensor, finetune[name]), name
    # First step: the policy is the reference, so the KL estimate is 0 and the ratio 1 (nothing clipped).
    assert capture.first["kl"] == pytest.approx(0.0, abs=1e-7) and capture.first["clip_fraction"] == 0.0
    final = load_checkpoint(run / "checkpoints/rl/final.ckpt")["trainable"]
    assert any(not torch.equal(final[n], capture.reference[n]) for n in capture.reference)
    summary = result.summaries["rl"]
    assert summary["samples"] == 4 * 2  # 4 steps of 2 prompts (each batch serves 2 steps: iterations 2)
    assert {"reward_mean", "reward_std", "kl", "clip_fraction", "answer_length"} <= set(summary["train"])
    # Validated on the held-out answers' LM loss, although the stage itself learns from rewards only.
    assert summary["val"]["val_lm_loss"] > 0
    rows = list(csv.DictReader((run / "logs/rl/metrics.csv").open()))
    assert {"train/reward_mean", "train/kl", "train/clip_fraction", "train/answer_length"} <= set(rows[0])


@pytest.mark.slow
def test_a_killed_rl_stage_resumes_to_the_same_weights(tmp_path, kit_paths, synth):
    whole = train(load_config(rl_config(tmp_path / "a", kit_paths, synth)))
    cfg = load_config(rl_config(tmp_path / "b", kit_paths, synth))
    # Killed after step 3: in the middle of a 2-step cycle on one batch of sampled answers.
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, callbacks=[Crash(3)])
    state = load_checkpoint(tmp_path / "b/runs/rl/checkpoints/rl/step-000003.ckpt")
    assert state["module_state"]["rollout"]["input_ids"].shape[0] == 2 * 3  # prompts x group
    resumed = train(cfg, resume="auto")
    assert resumed.stages_run == ["rl"] and resumed.summaries["rl"]["resumed_at"] == 3
    a = load_checkpoint(whole.run_dir / "checkpoints/rl/final.ckpt")["trainable"]
    b = load_checkpoint(resumed.run_dir / "checkpoints/rl/final.ckpt")["trainable"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_a_two_process_rl_run_is_deterministic(tmp_path, kit_paths, synth):
    runs = []
    for name, port in (("first", "29541"), ("second", "29542")):
        cfg = rl_config(tmp_path / name, kit_paths, synth, name="ddp", iterations=1)
        text = cfg.read_text().replace("training:\n", "training:\n  strategy: ddp\n  devices: 2\n  accelerator: cpu\n")
        cfg.write_text(text)
        out = tmp_path / name / "out"
        runs.append(run_two_ranks("tests.ddp_rl_run", [str(cfg), str(out)], out, port))
    first, second = runs
    assert first.keys() == second.keys() and any("lora_" in k for k in first)
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_an_adapted_vlm_takes_an_rl_stage_after_its_lora_stage(tmp_path, synth):
    from cora.adapt.run import train_adapt

    cfg = tmp_path / "adapt.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'adapt-qwen2_5_vl-tiny.yaml'}\n"
        f"experiment: {{name: rl-adapt, output_dir: {tmp_path / 'runs'}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: null}}\n"
        "training:\n  stages: [lora, rl]\n  progress_bar: false\n  loggers: [csv]\n  stage_configs:\n"
        "    lora: {max_steps: 1, overlap_loss_weight: 0.0}\n"
        "    rl: {kind: rl, language_model: lora, max_steps: 2, batch_size: 1, lr: 1.0e-2,\n"
        "         rl: {group_size: 2, max_new_tokens: 4}}\n"
    )
    capture = Capture()
    result = train_adapt(load_config(cfg), callbacks=[capture])
    assert result.stages_run == ["lora", "rl"]
    lora = load_checkpoint(result.run_dir / "checkpoints/lora/final.ckpt")["trainable"]
    assert capture.reference and all(torch.equal(t, lora[n]) for n, t in capture.reference.items() if n in lora)
    assert capture.first["kl"] == pytest.approx(0.0, abs=1e-7)
    assert result.summaries["rl"]["train"]["answer_length"] > 0
