"""DDP (gloo) on 2 CPU processes: both ranks end with identical weights, different from the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", MASTER_PORT="29531", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ddp_standin_run", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0.keys() == r1.keys()
    for name in r0:
        torch.testing.assert_close(r0[name], r1[name], rtol=0, atol=0, msg=name)
    state = json.loads((tmp_path / "runs/standin/stage_state.json").read_text())
    assert state["completed"] == ["vision", "resampler"]
    # 2 ranks x batch 4 x accumulation 2 x 6 steps: each rank saw its own half of every global batch.
    assert state["summaries"]["resampler"]["samples"] == 2 * 4 * 2 * 6
