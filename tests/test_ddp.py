"""DDP (gloo) on 2 CPU processes: both ranks end with identical weights, different from the start."""

from __future__ import annotations

import json

import pytest

from tests.ddp_util import run_two_ranks


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    run_two_ranks("tests.ddp_standin_run", [str(tmp_path)], tmp_path, port="29531")
    state = json.loads((tmp_path / "runs/standin/stage_state.json").read_text())
    assert state["completed"] == ["vision", "resampler"]
    # 2 ranks x batch 4 x accumulation 2 x 6 steps: each rank saw its own half of every global batch.
    assert state["summaries"]["resampler"]["samples"] == 2 * 4 * 2 * 6
