"""A 2-process DDP run (gloo, CPU) killed after step 3 and resumed with ``--resume auto`` ends with the weights
of the uninterrupted run, on both ranks (the one distributed strategy Lightning runs on a CPU: FSDP and
DeepSpeed need CUDA)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_util import ROOT, run_two_ranks


def _config(tmp: Path, kit_paths, synth: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "ddp.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n"
        f"experiment: {{name: ddp, output_dir: {tmp / 'runs'}}}\n"
        f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: null, view_cache: 0, num_workers: 0}}\n"
        "training:\n  strategy: ddp\n  devices: 2\n  accelerator: cpu\n  num_threads: 1\n"
        "  stages: [finetune]\n  progress_bar: false\n  loggers: [csv]\n  checkpoint_every_n_steps: 1\n"
        "  stage_configs:\n    finetune: {max_steps: 6, batch_size: 2, accumulate_grad_batches: 1}\n"
    )
    return cfg


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_to_the_uninterrupted_weights(tmp_path, kit_paths, synth):
    whole_cfg = _config(tmp_path / "whole", kit_paths, synth)
    whole = run_two_ranks("tests.ddp_resume_run", [str(whole_cfg), str(tmp_path / "whole/out"), "whole"],
                          tmp_path / "whole/out", "29551")  # fmt: skip

    cfg, out = _config(tmp_path / "killed", kit_paths, synth), tmp_path / "killed/out"
    out.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", MASTER_PORT="29552", OMP_NUM_THREADS="1")
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.ddp_resume_run", str(cfg), str(out), "crash"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert crashed.returncode != 0
    assert (tmp_path / "killed/runs/ddp/checkpoints/finetune/step-000003.ckpt").is_file()
    resumed = run_two_ranks("tests.ddp_resume_run", [str(cfg), str(out), "resume"], out, "29553")
    assert [(out / f"resumed_at{r}.txt").read_text() for r in (0, 1)] == ["3", "3"]  # it continued, not restarted
    assert whole.keys() == resumed.keys() and whole
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)
