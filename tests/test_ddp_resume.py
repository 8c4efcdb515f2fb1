"""2-process runs (gloo, CPU) killed after a step and resumed with ``--resume auto`` end with the weights of
the uninterrupted run, on both ranks, for every distributed strategy that runs on a CPU: DDP, and FSDP
(FSDP2, parameters and optimiser state sharded; its checkpoints hold the gathered state, so the run also
continues under DDP). DeepSpeed needs CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_util import ROOT, run_two_ranks


def _config(tmp: Path, kit_paths, synth: Path, strategy: str, stages: list[str], name: str | None = None) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    name = name or strategy
    cfg = tmp / f"{strategy}.yaml"
    # The resampler stage accumulates 2 micro-batches a step (under FSDP the first one skips the gradient sync).
    stage_cfgs = "".join(
        f"    {s}: {{max_steps: 6, batch_size: 2, accumulate_grad_batches: {2 if s == 'resampler' else 1}}}\n"
        for s in stages
    )
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n"
        f"experiment: {{name: {name}, output_dir: {tmp / 'runs'}}}\n"
        f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: null, view_cache: 0, num_workers: 0}}\n"
        f"training:\n  strategy: {strategy}\n  devices: 2\n  accelerator: cpu\n  num_threads: 1\n"
        f"  stages: [{', '.join(stages)}]\n  progress_bar: false\n  loggers: [csv]\n  checkpoint_every_n_steps: 1\n"
        f"  stage_configs:\n{stage_cfgs}"
    )
    return cfg


def _killed_and_resumed(
    tmp: Path, cfg: Path, ports: tuple[str, str], stage: str, resume_with: Path | None = None
) -> dict[str, torch.Tensor]:
    out = tmp / "out"
    out.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", MASTER_PORT=ports[0], OMP_NUM_THREADS="1")
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.ddp_resume_run", str(cfg), str(out), "crash", stage],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert crashed.returncode != 0
    assert (tmp / f"runs/{cfg.stem}/checkpoints/{stage}/step-000003.ckpt").is_file(), crashed.stderr[-3000:]
    resumed = run_two_ranks("tests.ddp_resume_run", [str(resume_with or cfg), str(out), "resume", stage], out, ports[1])
    assert [(out / f"resumed_at{r}.txt").read_text() for r in (0, 1)] == ["3", "3"]  # it continued, not restarted
    return resumed


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_to_the_uninterrupted_weights(tmp_path, kit_paths, synth):
    whole_cfg = _config(tmp_path / "whole", kit_paths, synth, "ddp", ["finetune"])
    whole = run_two_ranks("tests.ddp_resume_run", [str(whole_cfg), str(tmp_path / "whole/out"), "whole", "finetune"],
                          tmp_path / "whole/out", "29551")  # fmt: skip
    cfg = _config(tmp_path / "killed", kit_paths, synth, "ddp", ["finetune"])
    _assert_equal(_killed_and_resumed(tmp_path / "killed", cfg, ("29552", "29553"), "finetune"), whole)


@pytest.mark.slow
def test_a_killed_fsdp_run_resumes_to_the_uninterrupted_weights(tmp_path, kit_paths, synth):
    # Two stages: the second shards a fresh model rebuilt from the first's gathered checkpoint.
    stages = ["resampler", "finetune"]
    whole_cfg = _config(tmp_path / "whole", kit_paths, synth, "fsdp", stages)
    whole = run_two_ranks("tests.ddp_resume_run", [str(whole_cfg), str(tmp_path / "whole/out"), "whole", "finetune"],
                          tmp_path / "whole/out", "29561")  # fmt: skip
    cfg = _config(tmp_path / "killed", kit_paths, synth, "fsdp", stages)
    _assert_equal(_killed_and_resumed(tmp_path / "killed", cfg, ("29562", "29563"), "finetune"), whole)

    # Its checkpoints hold whole tensors keyed by name: the same run resumes under DDP as well.
    cfg = _config(tmp_path / "to_ddp", kit_paths, synth, "fsdp", stages)
    as_ddp = _config(tmp_path / "to_ddp", kit_paths, synth, "ddp", stages, name="fsdp")
    resumed = _killed_and_resumed(tmp_path / "to_ddp", cfg, ("29565", "29566"), "finetune", resume_with=as_ddp)
    _assert_close(resumed, whole)

    # Sharding changes where gradients are reduced, not what is learnt: DDP ends where FSDP does.
    ddp_cfg = _config(tmp_path / "ddp", kit_paths, synth, "ddp", stages)
    _assert_close(run_two_ranks("tests.ddp_resume_run", [str(ddp_cfg), str(tmp_path / "ddp/out"), "whole", "finetune"],
                                tmp_path / "ddp/out", "29567"), whole)  # fmt: skip


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_rank_whose_batch_is_all_unreadable_does_not_stop_the_run(strategy, tmp_path, kit_paths, synth):
    # Half the panoramas do not decode (bad_row_policy: skip) and each rank draws one row per step: some
    # steps leave one rank with an empty batch while the other trains. That rank must still take part in
    # the step's gradient exchange (Lightning stopped the run: "Skipping the training_step ... not supported").
    import csv

    rows = list(csv.DictReader((synth / "train.csv").open()))
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for i, row in enumerate(rows):
        if int(Path(row["url"]).stem) % 2:
            bad = bad_dir / f"{i}.png"
            whole = (synth / row["url"]).read_bytes()
            bad.write_bytes(whole[: len(whole) // 3])  # a valid header, then cut: refused when decoded
            row["url"] = str(bad)
        else:
            row["url"] = str(synth / row["url"])
    train_csv = tmp_path / "train.csv"
    with train_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = _config(tmp_path, kit_paths, synth, strategy, ["finetune"])
    text = cfg.read_text().replace(str(synth / "train.csv"), str(train_csv))
    text = text.replace("batch_size: 2", "batch_size: 1").replace(
        "num_workers: 0}", "num_workers: 0, bad_row_policy: skip}"
    )
    cfg.write_text(text)
    out = tmp_path / "out"
    port = "29581" if strategy == "ddp" else "29582"
    run_two_ranks("tests.ddp_resume_run", [str(cfg), str(out), "whole", "finetune"], out, port, timeout=120)
    summary = json.loads((tmp_path / f"runs/{strategy}/stage_state.json").read_text())["summaries"]["finetune"]
    assert summary["skipped_samples"] > 0 and summary["samples"] > 0


@pytest.mark.slow
def test_a_rank_that_read_no_heldout_sample_does_not_stall_validation(tmp_path):
    # The ranks combine their held-out sums in one collective: one that skipped it left the others waiting.
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", MASTER_PORT="29591", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ddp_val_run", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    val0, val1 = (json.loads((out / f"val{r}.json").read_text()) for r in (0, 1))
    assert val0 == val1 and val0["val_loss"] > 0  # rank 0's batches, on both ranks
