"""``cora demo``: the built-in end-to-end job on the embedded default (configs/tiny.yaml).

synthetic data → tiny offline models (tokenizer trained on the SynthPano corpus) → language
prior → the three training stages → held-out evaluation → the same model trained blind
(all pixels zero, same size and steps) → a summary with both runs' held-out answer loss and
answer accuracy. Every step is real work and prints what it produced.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cora.cli.main import UserError
from cora.config import CoraConfig, load_config
from cora.config.schema import DemoConfig
from cora.utils.io import atomic_write_json

ORDER = 0

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the built-in demo end to end on the tiny config")
    parser.add_argument("--config", default="configs/tiny.yaml", help="config with kit: and data.synth sections")
    parser.set_defaults(func=_demo)


@dataclass
class Demo:
    config: CoraConfig
    run_dir: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def blind_config(self) -> CoraConfig:
        cfg = self.config.model_copy(deep=True)
        cfg.experiment.name = f"{self.config.experiment.name}-blind"
        cfg.training.blind = True
        return cfg


def _train_samples(config: CoraConfig) -> list[Any]:
    from cora.data.synth import SynthPano, split_of

    syn = config.data.synth
    pano = SynthPano(syn.n, syn.seed, syn.width, syn.width // 2, syn.min_objects, syn.max_objects)
    return [pano.text(i) for i in range(syn.n) if split_of(i, syn.n) == "train"]


def train_corpus(config: CoraConfig) -> list[str]:
    """Captions, questions and answers of the *training* panoramas only (no test answer leaks into the LLM)."""
    from cora.data.records import CAPTION_QUERY

    texts = [CAPTION_QUERY]
    for sample in _train_samples(config):
        texts.append(sample.caption)
        for query, answer in sample.qa:
            texts.extend((query, answer))
    return texts


def chat_corpus(config: CoraConfig, tokenizer: Any) -> list[str]:
    """The training questions as the generator will ask them (chat template, generation prompt) + the answer.

    The generation prompt of a Qwen3-style template ends with an empty think block that the
    training text of the stages does not contain (SPEC §7); a from-scratch tiny LLM has to see
    that format once, or its generations start out of distribution.
    """
    from cora.data.records import CAPTION_QUERY
    from cora.processors.text import ChatFormatter

    formatter = ChatFormatter(
        tokenizer, system_prompt=config.data.system_prompt, vision_token=config.models.vision_token
    )
    texts = []
    for sample in _train_samples(config):
        for query, answer in [(CAPTION_QUERY, sample.caption), *sample.qa]:
            texts.append(formatter.prompt_text(query) + answer)
    return texts


def _step_data(demo: Demo) -> str:
    from cora.data.synth.dataset import ensure_synth_dataset

    syn = demo.config.data.synth
    summary = ensure_synth_dataset(
        syn.out_dir, syn.n, syn.seed, syn.width, syn.width // 2, syn.min_objects, syn.max_objects
    )
    data = demo.config.data
    # Unset paths point at the generated dataset (the config saved in the run folder shows them).
    for key, name in (
        ("train", "train.csv"),
        ("val", "val.csv"),
        ("test", "test.csv"),
        ("vision_train", "train_images.csv"),
    ):
        if getattr(data, key) is None:
            setattr(data, key, str(Path(syn.out_dir) / name))
    splits = ", ".join(f"{k} {v['panoramas']} panoramas / {v['rows']} rows" for k, v in summary["splits"].items())
    return f"SynthPano at {syn.out_dir}: {splits}"


def _step_kit(demo: Demo) -> str:
    from cora.kit import build_kit

    config = demo.config
    if config.kit is None:
        raise UserError("the demo needs a kit: section (see configs/tiny.yaml)")
    paths = build_kit(config.kit, seed=config.experiment.seed, extra_texts=train_corpus(config))
    info = json.loads(paths.manifest.read_text())
    demo.results["kit"] = str(paths.root)
    return (
        f"kit at {paths.root}: vision {info['vision']['parameters']:,} params, LM "
        f"{info['language_model']['parameters']:,} params, tokenizer {info['language_model']['vocab_size']} tokens"
    )


def _step_prior(demo: Demo) -> str:
    from cora.recipes.demo.language_prior import train_language_prior

    prior = (demo.config.demo or DemoConfig()).language_prior
    if not prior.enabled:
        return "skipped (demo.language_prior.enabled is false)"
    from transformers import AutoTokenizer

    lm_dir = Path(demo.config.models.language_model_name)
    texts = train_corpus(demo.config) + chat_corpus(demo.config, AutoTokenizer.from_pretrained(lm_dir))
    summary = train_language_prior(lm_dir, texts, prior, seed=demo.config.experiment.seed)
    demo.results["prior"] = summary
    state = "up to date" if summary["skipped"] else f"{summary['steps']} steps in {summary['seconds']}s"
    return f"{state}: held-out text loss {summary['heldout_loss_before']:.3f} → {summary['heldout_loss_after']:.3f}"


def _step_vision_prior(demo: Demo) -> str:
    from cora.processors.views import PanoramaViews
    from cora.recipes.demo.vision_prior import train_vision_prior

    config = demo.config
    prior = (config.demo or DemoConfig()).vision_prior
    if not prior.enabled:
        return "skipped (demo.vision_prior.enabled is false)"
    summary = train_vision_prior(
        config.models.vision_name,
        Path(config.data.synth.out_dir) / "train.jsonl",
        PanoramaViews.from_config(config.image_processing),
        prior,
        seed=config.experiment.seed,
    )
    demo.results["vision_prior"] = summary
    state = "up to date" if summary["skipped"] else f"{summary['steps']} steps in {summary['seconds']}s"
    before, after = summary["heldout_balanced_acc_before"], summary["heldout_balanced_acc_after"]
    return f"{state}: {prior.target}-label balanced accuracy (held out) {before:.3f} → {after:.3f}"


def _train(config: CoraConfig, label: str, demo: Demo) -> str:
    from cora.training.runner import run_dir_of, train

    run_dir = run_dir_of(config)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo's own run folder: always a fresh, honest run
    result = train(config)
    demo.results[f"train_{label}"] = result.summaries
    parts = [
        f"{name} {s['steps']} steps {s['seconds']:.0f}s loss {s['train'].get('loss', float('nan')):.3f}"
        for name, s in result.summaries.items()
    ]
    return f"{run_dir}: " + "; ".join(parts)


def _step_train(demo: Demo) -> str:
    return _train(demo.config, "vision", demo)


def _step_blind(demo: Demo) -> str:
    return _train(demo.blind_config, "blind", demo)


def _step_eval(demo: Demo) -> str:
    from cora.recipes.demo.evaluation import evaluate_run

    lines = []
    for label, config in (("vision", demo.config), ("blind", demo.blind_config)):
        result = evaluate_run(config)
        demo.results[f"eval_{label}"] = result
        lines.append(
            f"{label}: held-out answer loss {result['heldout_loss']:.3f}, answer accuracy "
            f"{result['answer_accuracy']:.1%} ({result['qa_samples']} questions), CIDEr "
            f"{_fmt(result['metrics'].get('cider'))}"
        )
    return "\n    ".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def _step_plot(demo: Demo) -> str:
    from cora.recipes.demo.plots import write_loss_plot
    from cora.training.runner import run_dir_of

    out = write_loss_plot(
        demo.run_dir / "loss_curves.svg",
        {"vision": demo.run_dir, "blind": run_dir_of(demo.blind_config)},
        list(demo.config.training.stages),
    )
    demo.results["plot"] = str(out)
    return str(out)


STEPS = [
    ("SynthPano data", _step_data),
    ("tiny-model kit", _step_kit),
    ("vision prior", _step_vision_prior),
    ("language prior", _step_prior),
    ("training (3 stages)", _step_train),
    ("blind training (no pixels)", _step_blind),
    ("held-out evaluation", _step_eval),
    ("loss curves", _step_plot),
]


def verdict(vision: dict[str, float], blind: dict[str, float]) -> str:
    """Whether seeing the panorama clearly helped: held-out loss at least 2% lower, or accuracy 5 points higher."""
    loss_gain = (blind["heldout_loss"] - vision["heldout_loss"]) / blind["heldout_loss"]
    acc_gain = vision["answer_accuracy"] - blind["answer_accuracy"]
    clear = loss_gain >= 0.02 or acc_gain >= 0.05
    word = "clearly helps" if clear else "makes no clear difference"
    return f"seeing the panorama {word}: held-out loss {loss_gain:+.1%} relative, accuracy {acc_gain * 100:+.1f} points"


def _type_table(vision: dict[str, dict], blind: dict[str, dict]) -> list[str]:
    """Per question type: where seeing the panorama helps and where it does not (yet)."""

    def acc(row: dict) -> str:
        return "-" if row["accuracy"] is None else f"{row['accuracy']:.0%}"

    lines = [
        "  per question type (held-out):",
        f"    {'type':<12} {'n':>3} {'vision loss':>11} {'blind loss':>10} {'vision acc':>10} {'blind acc':>9}",
    ]
    for kind, row in vision.items():
        other = blind.get(kind, {"loss": float("nan"), "accuracy": None})
        lines.append(
            f"    {kind:<12} {row['questions']:>3} {row['loss']:>11.3f} {other['loss']:>10.3f} "
            f"{acc(row):>10} {acc(other):>9}"
        )
    return lines


def _summary(demo: Demo, seconds: float) -> str:
    vis, blind = demo.results["eval_vision"], demo.results["eval_blind"]
    demo.results["verdict"] = verdict(vis, blind)
    lines = [
        "",
        "CORA demo summary (held-out SynthPano test split)",
        f"  {'run':<8} {'answer loss':>12} {'accuracy':>9}  predictions",
        f"  {'vision':<8} {vis['heldout_loss']:>12.3f} {vis['answer_accuracy']:>9.1%}  {vis['predictions']}",
        f"  {'blind':<8} {blind['heldout_loss']:>12.3f} {blind['answer_accuracy']:>9.1%}  {blind['predictions']}",
        f"  {demo.results['verdict']}",
        *_type_table(vis["by_type"], blind["by_type"]),
        f"  run folder: {demo.run_dir} (stage_state.json, checkpoints/, logs/, model/)",
        f"  blind run:  {demo.run_dir.parent / (demo.run_dir.name + '-blind')}",
        f"  loss curves: {demo.results['plot']}   metrics: {vis['metrics_json']}",
        f"  total time {seconds:.0f}s",
    ]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from cora.training.runner import run_dir_of

    config = load_config(args.config)
    demo = Demo(config, run_dir_of(config))
    t_start = time.perf_counter()
    for name, step in STEPS:
        t0 = time.perf_counter()
        summary = step(demo)
        print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {summary}", flush=True)
    seconds = time.perf_counter() - t_start
    demo.results["seconds"] = round(seconds, 1)
    text = _summary(demo, seconds)  # also records the verdict in demo.results
    atomic_write_json(demo.run_dir / "demo_summary.json", demo.results)
    print(text)
    print(f"  summary file: {demo.run_dir / 'demo_summary.json'}")
    return 0
