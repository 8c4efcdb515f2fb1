"""Run a sweep: every selected (row, seed) is a normal run folder, trained then measured on the test split.

Re-running skips finished runs (their ``sweep_result.json`` matches the run's config) and resumes
interrupted ones exactly (the stage runner's ``--resume auto``); a failing run is reported, its
traceback kept in ``<run>/sweep_error.txt``, and the others go on. ``jobs > 1`` runs that many runs
at once in separate processes (each tiny run uses one core).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from cora.config import CoraConfig
from cora.recipes.sweep.spec import SweepSpec, load_sweep
from cora.utils.io import atomic_write_json, atomic_write_text
from cora.utils.machine import resolve_threads, usable_cpus

logger = logging.getLogger(__name__)

RESULT = "sweep_result.json"
ERROR = "sweep_error.txt"


@dataclass(frozen=True)
class RunOutcome:
    row: str
    seed: int
    status: Literal["finished", "skipped", "failed"]
    seconds: float
    detail: str  # the failure's message, or where the result is


def _resolved(spec: SweepSpec, row: str, seed: int) -> CoraConfig:
    config = spec.run_config(row, seed)
    if spec.prepare != "demo":
        return config
    from cora.recipes.demo.resolve import resolve_config

    # Unset data paths point at the SynthPano files the preparation wrote, as in the demo.
    return resolve_config(config)


def _finished(run_dir: Path, config: CoraConfig) -> bool:
    from cora.training.runner import same_config

    try:
        return same_config(json.loads((run_dir / RESULT).read_text())["config_digest"], config)
    except (OSError, ValueError, KeyError):
        return False


def _train_and_measure(config: CoraConfig, run_dir: Path) -> dict[str, Any]:
    import torch

    from cora.recipes.sweep.measure import measure_run
    from cora.training import runner

    if threads := resolve_threads(config.training.num_threads):
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if config.adapt is not None:  # an off-the-shelf VLM: the same runner with the adapt model and data
        from cora.adapt.run import load_adapt_run, train_adapt

        result = train_adapt(config, resume="auto")
        model = load_adapt_run(run_dir, config) if result.model is None else result.model.eval()
    else:
        result = runner.train(config, resume="auto")
        model = runner.load_run_model(config, run_dir) if result.model is None else result.model.eval()
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    measured = measure_run(model, config, run_dir)
    return {**measured, "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - t1, 1)}


def run_one(spec_file: str, row: str, seed: int) -> RunOutcome:
    """Train and measure one (row, seed) unless it is finished; never raises (a failure is an outcome)."""
    from cora.training.runner import config_digest

    t0 = time.perf_counter()
    spec = load_sweep(spec_file)
    run_dir = spec.run_dir(row, seed)
    try:
        config = _resolved(spec, row, seed)
        digest = config_digest(config)
        if _finished(run_dir, config):
            return RunOutcome(row, seed, "skipped", 0.0, str(run_dir / RESULT))
        (run_dir / ERROR).unlink(missing_ok=True)
        measured = _train_and_measure(config, run_dir)
        result = {"row": row, "seed": seed, "config_digest": digest, **measured}
        atomic_write_json(run_dir / RESULT, result)
        return RunOutcome(row, seed, "finished", round(time.perf_counter() - t0, 1), str(run_dir / RESULT))
    except Exception as exc:  # one failing run must not stop the others: reported, kept on disk
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / ERROR, traceback.format_exc())
        return RunOutcome(row, seed, "failed", round(time.perf_counter() - t0, 1), f"{type(exc).__name__}: {exc}")


def prepare(spec: SweepSpec, on_line: Callable[[str], None]) -> None:
    """``prepare: demo``: SynthPano, the tiny kit and its priors, built once from the base config."""
    if spec.prepare != "demo":
        return
    from cora.config import load_config
    from cora.recipes.demo.run import prepare_run

    prepare_run(load_config(spec.base_path), lambda line: on_line(f"prepare: {line}"))


def run_sweep(
    spec_file: str | Path,
    rows: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    jobs: int = 1,
    on_outcome: Callable[[RunOutcome], None] = lambda outcome: None,
    on_line: Callable[[str], None] = logger.info,
) -> list[RunOutcome]:
    """Every selected run, in row then seed order (``jobs`` at a time); ``sweep.json`` records the sweep."""
    spec = load_sweep(spec_file)
    todo = spec.select(rows, seeds)
    spec.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec.root / "sweep.json", spec.model_dump(mode="json"))
    prepare(spec, on_line)
    args = [(str(spec.source), row, seed) for row, seed in todo]
    outcomes: list[RunOutcome] = []
    if jobs <= 1:
        for a in args:
            outcomes.append(run_one(*a))
            on_outcome(outcomes[-1])
    else:
        share = max(1, usable_cpus() // jobs)  # each job's CPUs: `auto` threads and workers count these
        with multiprocessing.get_context("spawn").Pool(
            jobs, initializer=os.environ.__setitem__, initargs=("CORA_CPUS", str(share)), maxtasksperchild=1
        ) as pool:
            for outcome in pool.imap(_star, args):
                outcomes.append(outcome)
                on_outcome(outcome)
    atomic_write_json(spec.root / "sweep_outcomes.json", [asdict(o) for o in outcomes])
    return outcomes


def _star(args: tuple[str, str, int]) -> RunOutcome:
    return run_one(*args)
