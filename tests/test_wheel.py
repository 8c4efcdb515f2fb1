"""The built wheel in a fresh virtual environment, used from an empty folder: the packaged configs,
``python -m cora``, ``cora kit build`` and a reduced ``cora demo`` — no file of this checkout in sight."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REDUCED = """\
extends: tiny.yaml
experiment: {name: mine}
data: {synth: {n: 16, width: 128}, view_cache: 0}
demo:
  language_prior: {steps: 2, batch_size: 4}
  vision_prior: {steps: 2, batch_size: 8}
  jobs: 1
training:
  stages: [resampler, finetune]
  stage_configs:
    resampler: {max_steps: 2, batch_size: 2, accumulate_grad_batches: 1}
    finetune: {max_steps: 2, batch_size: 2, accumulate_grad_batches: 1}
evaluation: {batch_size: 8, max_new_tokens: 4}
"""


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}: rc {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_runs_the_demo_from_an_empty_folder(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "empty"
    work.mkdir()
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(dist),
        str(ROOT),
    ]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("cora-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=300)
    # The dependencies come from this environment's site-packages (a .pth line adds the folder without
    # processing its own .pth files, so this checkout's editable install stays out of sight).
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    where = _run([str(python), "-c", "import cora; print(cora.__file__)"], work, env)
    assert where.startswith(str(venv)), where  # the wheel's cora, not this checkout's
    assert "usage: cora" in _run([str(python), "-m", "cora", "--help"], work, env)
    assert "valid" in _run([str(venv / "bin" / "cora"), "config", "validate", "configs/tiny.yaml"], work, env)
    (work / "mine.yaml").write_text(REDUCED)
    out = _run([str(venv / "bin" / "cora"), "demo", "--config", "mine.yaml"], work, env)
    assert "model kit: kit at .cora/kit" in out and "summary file:" in out
    assert (work / "runs" / "mine" / "demo_summary.json").is_file()
    assert (work / "runs" / "mine" / "loss_curves.png").is_file()
    assert sorted(p.name for p in work.iterdir()) == [".cora", "mine.yaml", "runs"]
