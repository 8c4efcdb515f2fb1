"""The stage runner on a stand-in model: stage parameter sets, resume, --stage, checkpoint integrity."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from cora.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cora.training.runner import RunError, train
from tests.standin import StandinVLM, standin_config, standin_data, standin_model


class Crash(L.Callback):
    """Simulates a killed run: raises once ``global_step`` reaches ``at`` in ``stage``."""

    def __init__(self, stage: str, at: int) -> None:
        self.stage, self.at = stage, at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.stage_name == self.stage and module.plan.start_step + trainer.global_step >= self.at:
            raise RuntimeError("simulated crash")


def dropout_model(config):
    return StandinVLM(dropout=0.2)


def final_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_stage_checkpoints_hold_the_trainable_sets_and_frozen_weights_do_not_move(tmp_path):
    cfg = standin_config(tmp_path)
    L.seed_everything(cfg.experiment.seed, verbose=False)  # the runner's seed before it builds the model
    before = final_weights(StandinVLM())
    result = train(cfg, model_factory=standin_model, data_factory=standin_data)
    run = result.run_dir
    keys = {s: set(load_checkpoint(run / "checkpoints" / s / "final.ckpt")["trainable"]) for s in cfg.training.stages}
    groups = {s: {k.split(".")[0] for k in ks} for s, ks in keys.items()}
    assert groups["vision"] == {"blocks", "resampler", "vicreg_projector"}
    assert groups["resampler"] == {"resampler", "panorama_projector"}
    assert groups["finetune"] == {"panorama_projector", "lora"}
    after = result.model.state_dict()
    # Never trainable in any stage: patch embedding, LM embedding and head.
    for name in ("patch.weight", "embed.weight", "head.weight"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["resampler.0.weight"], after["resampler.0.weight"])
    state = json.loads((run / "stage_state.json").read_text())
    assert state["completed"] == ["vision", "resampler", "finetune"] and state["current"] is None
    assert set(state["metrics"]["vision"]) >= {"val_loss", "adj_cos", "hungarian_acc", "eff_rank"}
    assert state["summaries"]["resampler"]["samples"] == 6 * 4 * 2
    assert (run / "config.yaml").is_file() and (run / "logs" / "vision" / "metrics.csv").is_file()
    # Stage 2 trains with LM + 0.1 x overlap loss.
    s2 = state["summaries"]["resampler"]["train"]
    assert s2["loss"] == pytest.approx(s2["lm_loss"] + 0.1 * s2["overlap_loss"], rel=1e-5)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    ref = train(standin_config(tmp_path / "a"), model_factory=dropout_model, data_factory=standin_data)
    cfg = standin_config(tmp_path / "b")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, model_factory=dropout_model, data_factory=standin_data, callbacks=[Crash("resampler", 5)])
    state = json.loads((tmp_path / "b/runs/standin/stage_state.json").read_text())
    assert state["completed"] == ["vision"] and state["current"] == "resampler"
    assert state["last_checkpoint"]["resampler"].endswith("step-000004.ckpt")
    with pytest.raises(RunError, match="--resume auto"):
        train(cfg, model_factory=dropout_model, data_factory=standin_data)
    resumed = train(cfg, resume="auto", model_factory=dropout_model, data_factory=standin_data)
    assert resumed.stages_run == ["resampler", "finetune"]
    assert resumed.summaries["resampler"]["resumed_at"] == 4
    a, b = final_weights(ref.model), final_weights(resumed.model)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_stage_flag_loads_previous_stage_weights(tmp_path):
    cfg = standin_config(tmp_path)
    with pytest.raises(CheckpointError, match="needs the weights of stage 'vision'"):
        train(cfg, stage="resampler", model_factory=standin_model, data_factory=standin_data)
    first = train(cfg, stage="vision", model_factory=standin_model, data_factory=standin_data)
    second = train(cfg, stage="resampler", model_factory=standin_model, data_factory=standin_data)
    # Stage 2 froze the VICReg projector: it must be stage 1's, loaded from its checkpoint.
    torch.testing.assert_close(second.model.vicreg_projector[0].weight, first.model.vicreg_projector[0].weight)
    with pytest.raises(RunError, match="not one of training.stages"):
        train(cfg, stage="nope", model_factory=standin_model, data_factory=standin_data)


def test_corrupt_truncated_and_missing_checkpoints_are_rejected(tmp_path):
    path = save_checkpoint(tmp_path / "c.ckpt", {"trainable": {"w": torch.ones(3)}, "step": 1})
    assert load_checkpoint(path)["step"] == 1
    raw = path.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(raw[:-10])
    with pytest.raises(CheckpointError, match="trunc.ckpt is truncated"):
        load_checkpoint(tmp_path / "trunc.ckpt")
    flipped = bytearray(raw)
    flipped[-5] ^= 0xFF
    (tmp_path / "bad.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="bad.ckpt is corrupt \\(checksum mismatch\\)"):
        load_checkpoint(tmp_path / "bad.ckpt")
    (tmp_path / "other.ckpt").write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(CheckpointError, match="not a CORA checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_interrupted_write_leaves_no_checkpoint(tmp_path, monkeypatch):
    class Boom:
        def __reduce__(self):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "x.ckpt", {"bad": Boom()})
    assert list(tmp_path.iterdir()) == []


def test_resume_from_a_corrupt_checkpoint_names_it(tmp_path):
    cfg = standin_config(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, model_factory=standin_model, data_factory=standin_data, callbacks=[Crash("vision", 3)])
    ckpt = next((tmp_path / "runs/standin/checkpoints/vision").glob("step-*.ckpt"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"{ckpt.name} is truncated"):
        train(cfg, resume="auto", model_factory=standin_model, data_factory=standin_data)


def test_load_run_model_rebuilds_the_final_weights(tmp_path):
    from cora.training.runner import load_run_model

    cfg = standin_config(tmp_path)
    result = train(cfg, model_factory=standin_model, data_factory=standin_data)
    loaded = load_run_model(cfg, model_factory=standin_model)
    a, b = final_weights(result.model), final_weights(loaded)
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_heldout_measures():
    from torch.utils.data import Subset

    from cora.evaluation.answers import answer_accuracy
    from cora.recipes.demo.heldout import heldout_lm_loss, heldout_lm_loss_by_group
    from tests.standin import StandinData, collate

    model = standin_model(None)
    model.set_stage(_finetune_cfg())
    data = StandinData(6)
    whole = heldout_lm_loss(model, data, collate, batch_size=6)
    # Token-weighted: batches of 4 + 2 give the same mean as one batch of 6.
    assert heldout_lm_loss(model, data, collate, batch_size=4) == pytest.approx(whole, rel=1e-6)
    batch = collate([data[i] for i in range(6)])
    assert whole == pytest.approx(float(model(**batch_inputs(batch)).loss), rel=1e-6)
    assert heldout_lm_loss(model, data, collate, blind=True) != pytest.approx(whole)
    # Per group: each group's own mean, and over all groups the same token-weighted mean.
    overall, by_group = heldout_lm_loss_by_group(model, data, collate, {"a": [0, 1, 2], "b": [3, 4, 5]})
    assert overall == pytest.approx(whole, rel=1e-6)
    assert by_group["b"] == pytest.approx(heldout_lm_loss(model, Subset(data, [3, 4, 5]), collate), rel=1e-6)
    with pytest.raises(ValueError, match=r"no answer tokens \(groups \['none'\]\)"):
        heldout_lm_loss_by_group(model, data, collate, {"a": [0], "none": []})
    assert answer_accuracy([("The blue cone.", ["the blue cone"]), ("two", ["three"])]) == 0.5


def batch_inputs(batch):
    return {k: batch[k] for k in ("pixel_values", "geometries", "input_ids", "attention_mask", "labels")}


def _finetune_cfg():
    from cora.config.sections.training import REFERENCE_STAGES, StageConfig

    return StageConfig.model_validate(REFERENCE_STAGES["finetune"])


def test_resume_from_an_explicit_checkpoint_path(tmp_path):
    cfg = standin_config(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, model_factory=standin_model, data_factory=standin_data, callbacks=[Crash("resampler", 3)])
    ckpt = tmp_path / "runs/standin/checkpoints/resampler/step-000002.ckpt"
    assert load_checkpoint(ckpt)["step"] == 2
    with pytest.raises(RunError, match="checkpoint of stage 'resampler', not of 'finetune'"):
        train(cfg, stage="finetune", resume=str(ckpt), model_factory=standin_model, data_factory=standin_data)
    result = train(cfg, resume=str(ckpt), model_factory=standin_model, data_factory=standin_data)
    assert result.stages_run == ["resampler", "finetune"] and result.summaries["resampler"]["resumed_at"] == 2
