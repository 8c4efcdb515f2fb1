"""Models that are whole: a diverging loss stops training, damaged or non-finite saved weights are refused,
and a run whose stages did not all finish is not loaded as if it had."""

from __future__ import annotations

import json

import pytest
import torch

from cora.training.module import TrainingDiverged
from cora.training.runner import RunError, load_run_model, train
from tests.standin import StandinData, collate, standin_config, standin_data, standin_model


class NaNAfter(StandinData):
    """Pixels turn NaN from item ``at`` on: the loss of the step that reads them is not finite."""

    def __init__(self, n: int, at: int) -> None:
        super().__init__(n)
        self.at = at

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        if i >= self.at:
            item["pixel_values"] = torch.full_like(item["pixel_values"], float("nan"))
        return item


def nan_data(config, stage, stage_cfg, tokenizer):
    from cora.training.module import StageData

    if stage != "resampler":
        return standin_data(config, stage, stage_cfg, tokenizer)
    return StageData(NaNAfter(24, at=0), None, collate)


def test_a_non_finite_loss_stops_training_naming_the_stage_and_step(tmp_path):
    cfg = standin_config(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"stage resampler: the loss is nan at step 1 of 6"):
        train(cfg, model_factory=standin_model, data_factory=nan_data)
    state = json.loads((tmp_path / "runs" / cfg.experiment.name / "stage_state.json").read_text())
    assert "resampler" not in state["completed"]  # never marked complete


@pytest.fixture(scope="module")
def saved(tiny_config, kit_paths, tmp_path_factory):
    from cora.model import build_model

    models = tiny_config.models.model_copy(
        update={"vision_name": str(kit_paths.vision), "language_model_name": str(kit_paths.language_model)}
    )
    cfg = tiny_config.model_copy(update={"models": models})
    out = tmp_path_factory.mktemp("saved")
    build_model(cfg).save_pretrained(out, run_config=cfg)
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_saved_weights_carry_a_checksum_checked_at_load(saved, tmp_path):
    from cora.model import load_model

    assert len(json.loads((saved / "cora_model.json").read_text())["sha256"]) == 64
    damaged = _copy(saved, tmp_path / "damaged")
    data = bytearray((damaged / "trainable.safetensors").read_bytes())
    data[-3] ^= 0xFF  # one flipped byte inside a tensor
    (damaged / "trainable.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"trainable.safetensors: checksum mismatch"):
        load_model(damaged)


def test_non_finite_saved_weights_are_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    from cora.model import load_model

    poisoned = _copy(saved, tmp_path / "poisoned")
    state = load_file(str(poisoned / "trainable.safetensors"))
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("inf"))
    save_file(state, str(poisoned / "trainable.safetensors"))
    meta = json.loads((poisoned / "cora_model.json").read_text())
    meta.pop("sha256")  # as a model saved before checksums: the values are still checked
    (poisoned / "cora_model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"{name}: .*not finite"):
        load_model(poisoned)


def test_a_run_whose_last_stage_did_not_finish_is_not_loaded_silently(tmp_path, caplog):
    cfg = standin_config(tmp_path)
    train(cfg, model_factory=standin_model, data_factory=standin_data, stage="vision")
    with pytest.raises(RunError, match=r"finished 1 of its 3 stages \(vision\).*resampler"):
        load_run_model(cfg, model_factory=standin_model)
    with caplog.at_level("WARNING"):
        load_run_model(cfg, model_factory=standin_model, allow_incomplete=True)
    assert "last finished stage: vision" in caplog.text
