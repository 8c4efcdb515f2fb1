"""The demo end to end: resolve the configs once, run every step, write ``demo_summary.json``.

synthetic data → tiny offline models (tokenizer trained on the SynthPano corpus) → vision and
language priors → the three training stages → the same model trained blind (all pixels zero,
same size and steps) → held-out evaluation of both runs → a summary with both runs' held-out
answer loss and answer accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cora.config import CoraConfig
from cora.recipes.demo.resolve import blind_config, resolve_config
from cora.recipes.demo.steps import PREPARE_STEPS, STEPS, DemoRun
from cora.recipes.demo.summary import summary_text, verdict
from cora.utils.io import atomic_write_json

# Told of each step as it ends: its name, its seconds, the line saying what it produced.
StepReport = Callable[[str, float, str], None]


@dataclass(frozen=True)
class DemoOutcome:
    results: dict[str, Any]  # what demo_summary.json holds
    summary: str  # the closing table
    summary_file: Path


def run_demo(config: CoraConfig, on_step: StepReport | None = None) -> DemoOutcome:
    """Run the demo on ``config`` (left unchanged) into ``run_dir_of(config)`` and its ``-blind`` twin."""
    from cora.training.runner import run_dir_of

    resolved = resolve_config(config)
    run = DemoRun(resolved, blind_config(resolved), run_dir_of(resolved))
    t_start = time.perf_counter()
    for name, step in STEPS:
        t0 = time.perf_counter()
        line = step(run)
        if on_step is not None:
            on_step(name, time.perf_counter() - t0, line)
    seconds = time.perf_counter() - t_start
    run.results["seconds"] = round(seconds, 1)
    run.results["verdict"] = verdict(run.results["eval_vision"], run.results["eval_blind"])
    text = summary_text(run.results, run.run_dir, seconds)
    summary_file = run.run_dir / "demo_summary.json"
    atomic_write_json(summary_file, run.results)
    return DemoOutcome(run.results, text, summary_file)


def prepare_run(config: CoraConfig, on_line: Callable[[str], None]) -> CoraConfig:
    """What a config with a ``kit:`` section needs before its stages train (``cora train``, a sweep's
    ``prepare: demo``): the SynthPano data, the kit (built, or checked and kept), and the priors its
    ``demo:`` section enables (each says whether it trained, was up to date or is off). Returns the
    config with its unset data files pointing at the SynthPano splits."""
    from cora.training.runner import run_dir_of

    resolved = resolve_config(config)
    run = DemoRun(resolved, blind_config(resolved), run_dir_of(resolved))
    for name, step in PREPARE_STEPS:
        on_line(f"{name}: {step(run)}")
    return resolved
