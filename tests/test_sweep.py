"""``cora sweep`` + ``cora report`` end to end on a 2-row × 2-seed sweep of a few steps: interrupted, resumed
without retraining finished runs, aggregated with paired bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest

from cora.cli.main import main
from cora.recipes.sweep import SweepError, aggregate, load_sweep, render, run_sweep
from cora.recipes.sweep.aggregate import _stat

ROOT = Path(__file__).resolve().parents[1]


def _sweep_file(tmp_path: Path, synth: Path, kit_paths, rows: str | None = None) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(f"""extends: {ROOT / "configs" / "tiny.yaml"}
models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}
data: {{train: {synth / "train.csv"}, val: null, test: {synth / "test.csv"}, vision_train: {synth / "train.csv"},
        view_cache: 0}}
training:
  stages: [vision, resampler, finetune]
  progress_bar: false
  loggers: [csv]
  checkpoint_every_n_steps: 1
  stage_configs:
    vision: {{max_steps: 1, batch_size: 2}}
    resampler: {{max_steps: 2, batch_size: 2}}
    finetune: {{max_steps: 3, batch_size: 2}}
evaluation: {{metrics: [bleu4], max_new_tokens: 4, batch_size: 8}}
""")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"name: mini\nbase: base.yaml\noutput_dir: {tmp_path / 'runs'}\nseeds: [3, 4]\nreference: tiles\n"
        + (
            rows
            or "rows:\n  tiles: {}\n  resize:\n    image_processing: {crop_strategy: resize}\n"
            "    training: {stages: [resampler, finetune], stage_configs: {resampler: {overlap_loss_weight: 0}}}\n"
        )
    )
    return sweep


class Killed(BaseException):
    """The sweep process dying mid-run (not an ``Exception``: no run-level handler may swallow it)."""


class Interrupt(L.Callback):
    """Kills the run in its last stage, after a step checkpoint was written."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.stage_name == "finetune" and module.plan.start_step + trainer.global_step >= 2:
            raise Killed


@pytest.mark.slow
def test_sweep_interrupted_resumes_without_retraining_and_reports(tmp_path, synth, kit_paths, monkeypatch, capsys):
    import cora.training.runner as runner

    sweep = _sweep_file(tmp_path, synth, kit_paths)
    spec = load_sweep(sweep)
    calls = {"n": 0}
    real_train = runner.train

    def train_then_interrupt_the_third(config, **kwargs):
        calls["n"] += 1
        callbacks = [Interrupt()] if calls["n"] == 3 else []
        return real_train(config, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(runner, "train", train_then_interrupt_the_third)
    with pytest.raises(Killed):
        run_sweep(sweep)
    finished = [spec.run_dir("tiles", 3), spec.run_dir("tiles", 4)]
    stamps = {p: (p / "sweep_result.json").stat().st_mtime_ns for p in finished}
    interrupted = spec.run_dir("resize", 3)
    assert not (interrupted / "sweep_result.json").exists()
    assert list((interrupted / "checkpoints" / "finetune").glob("step-*.ckpt"))

    monkeypatch.setattr(runner, "train", real_train)
    assert main(["sweep", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "skipped  tiles/seed-3" in out and "skipped  tiles/seed-4" in out and "finished resize/seed-3" in out
    assert {p: (p / "sweep_result.json").stat().st_mtime_ns for p in finished} == stamps  # not retrained
    state = json.loads((interrupted / "stage_state.json").read_text())
    assert state["summaries"]["finetune"]["resumed_at"] == 2  # continued, not restarted

    result = json.loads((spec.run_dir("resize", 4) / "sweep_result.json").read_text())
    assert set(result["measures"]["by_type"]) >= {"caption", "behind", "count"}
    assert result["measures"]["seam"]["n"] + result["measures"]["no_seam"]["n"] == result["questions"]
    assert "bleu4" in result["metrics"]

    agg = aggregate(spec)
    resize = agg["rows"]["resize"]
    assert resize["seeds"] == [3, 4] and resize["measures"]["exact_match"][2] == 2
    cmp = resize["vs_reference"]
    assert cmp["seeds"] == 2 and cmp["questions"] == result["questions"]
    for what in ("loss", "em"):
        lo, hi = cmp[what]["ci95"]
        assert lo <= cmp[what]["diff"] <= hi
    assert "(reference)" in render(agg, "md") and render(agg, "csv").startswith("row,seeds,answer loss")
    assert r"\toprule" in render(agg, "latex")
    assert main(["report", str(spec.root), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("row,seeds,answer loss")
    assert (spec.root / "report.md").is_file()


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, synth, kit_paths, capsys):
    rows = (
        "rows:\n  tiles: {training: {stage_configs: {finetune: {max_steps: 1}}}}\n  broken: {data: {test: /nope.csv}}\n"
    )
    sweep = _sweep_file(tmp_path, synth, kit_paths, rows)
    assert main(["sweep", str(sweep), "--seeds", "3", "--rows", "broken"]) == 1
    out = capsys.readouterr().out
    assert "failed   broken/seed-3" in out and "/nope.csv" in out
    spec = load_sweep(sweep)
    assert "Traceback" in (spec.run_dir("broken", 3) / "sweep_error.txt").read_text()


def test_sweep_files_are_checked_before_any_training(tmp_path, synth, kit_paths):
    bad_key = _sweep_file(tmp_path, synth, kit_paths, "rows:\n  tiles: {image_processing: {crop_strategy: resiz}}\n")
    with pytest.raises(SweepError, match=r"rows.tiles: image_processing.crop_strategy: .*did you mean 'resize'"):
        load_sweep(bad_key)
    spec = load_sweep(_sweep_file(tmp_path, synth, kit_paths))
    with pytest.raises(SweepError, match="not in the sweep: nope, 9"):
        spec.select(["nope"], [9])
    assert spec.select(["resize"], None) == [("resize", 3), ("resize", 4)]


def test_paired_statistic_by_hand():
    """Two seeds, three questions: the paired difference is the mean over seeds of the per-seed differences."""

    def arrays(em, loss, tokens, seam):
        return {"em": np.array(em, float), "loss": np.array(loss, float), "tokens": np.array(tokens, float),
                "seam": np.array(seam)}  # fmt: skip

    pairs = [
        (arrays([1, 1, 0], [2, 4, 6], [1, 2, 3], [True, False, True]),
         arrays([0, 1, 0], [3, 4, 9], [1, 2, 3], [True, False, True])),
        (arrays([1, 0, 1], [1, 1, 1], [1, 1, 1], [True, False, True]),
         arrays([1, 0, 0], [2, 2, 2], [1, 1, 1], [True, False, True])),
    ]  # fmt: skip
    idx = np.arange(3)
    # seed 1: EM 2/3 − 1/3; seed 2: 2/3 − 1/3 → +1/3. Loss: (12/6 − 16/6) and (1 − 2) → mean −5/6.
    assert _stat(pairs, idx, "em") == pytest.approx(1 / 3)
    assert _stat(pairs, idx, "loss") == pytest.approx((-4 / 6 - 1) / 2)
    # Seam subset (questions 0 and 2): seed 1: 1/2 − 0; seed 2: 1 − 1/2 → +1/2.
    assert _stat(pairs, idx, "seam_em") == pytest.approx(0.5)


@pytest.mark.slow
def test_a_sweep_of_an_adapted_vlm(tmp_path, synth):
    base = tmp_path / "adapt.yaml"
    base.write_text(f"""extends: {ROOT / "configs" / "adapt-qwen2_5_vl-tiny.yaml"}
data: {{train: {synth / "train.csv"}, val: null, test: {synth / "test.csv"}}}
training:
  progress_bar: false
  loggers: [csv]
  stage_configs: {{aligner: {{max_steps: 1}}, lora: {{max_steps: 1}}}}
evaluation: {{metrics: [bleu4], max_new_tokens: 3, batch_size: 8}}
""")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"name: vlm\nbase: adapt.yaml\noutput_dir: {tmp_path / 'runs'}\nseeds: [0]\nreference: views\n"
        "rows:\n  views: {}\n  no_panorope: {adapt: {panorope: false}}\n"
    )
    outcomes = run_sweep(sweep)
    assert [o.status for o in outcomes] == ["finished", "finished"], [o.detail for o in outcomes]
    agg = aggregate(load_sweep(sweep))
    measures = agg["rows"]["views"]["measures"]
    assert "exact_match" in measures and "bleu4" in measures and "answer_loss" not in measures
    cmp = agg["rows"]["no_panorope"]["vs_reference"]
    assert np.isnan(cmp["loss"]["diff"]) and not np.isnan(cmp["em"]["diff"])


def test_summarise_weights_loss_by_tokens_and_reports_seam_and_yaw():
    from cora.recipes.sweep.measure import summarise

    def q(kind, seam, em, loss, tokens, yaw=None, grounding=False):
        return {"type": kind, "seam": seam, "exact_match": em, "loss_sum": loss, "tokens": tokens,
                "grounding": grounding, "yaw_error_deg": yaw}  # fmt: skip

    rows = [
        q("caption", True, None, 6.0, 6),
        q("behind", True, True, 1.0, 2),
        q("count", False, False, 3.0, 2),
        q("grounding", False, False, 2.0, 4, yaw=3.6, grounding=True),
        q("grounding", True, False, 2.0, 4, yaw=None, grounding=True),  # no box in the answer: unparsed
    ]
    out = summarise(rows)
    assert out["all"] == {"n": 5, "answer_loss": 14.0 / 18, "exact_match": 0.25}
    assert out["seam"]["n"] == 3 and out["seam"]["exact_match"] == 0.5 and out["no_seam"]["exact_match"] == 0.0
    assert out["by_type"]["caption"]["exact_match"] is None
    assert out["yaw_error_deg"] == {"n": 2, "unparsed": 1, "mean": 3.6}
