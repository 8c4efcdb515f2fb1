"""Launch a script as a 2-process DDP (gloo) run and check both ranks ended with the same weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_two_ranks(module: str, args: list[str], out: Path, port: str, timeout: float = 300) -> dict[str, torch.Tensor]:
    """``python -m module *args`` (it launches rank 1 itself and each rank saves ``out/rank<r>.pt``);
    the ranks' weights are asserted identical and rank 0's returned."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", MASTER_PORT=port, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert r0.keys() == r1.keys()
    for name in r0:
        torch.testing.assert_close(r0[name], r1[name], rtol=0, atol=0, msg=name)
    return r0
