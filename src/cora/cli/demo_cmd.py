"""``cora demo``: the built-in end-to-end job on the embedded default (configs/tiny.yaml).

Each step is real work and prints what it produced. Steps are added as the project grows
(data, training, evaluation); the demo never fakes a step it cannot run yet.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from cora.cli.main import UserError
from cora.config import CoraConfig, load_config, save_config

ORDER = 0


logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the built-in demo end to end on the tiny config")
    parser.add_argument("--config", default="configs/tiny.yaml", help="config with a kit: section")
    parser.set_defaults(func=_demo)


def _step_kit(config: CoraConfig, run_dir: Path) -> str:
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from cora.kit import build_kit

    assert config.kit is not None
    paths = build_kit(config.kit, seed=config.experiment.seed)
    # Load back through the same path a hub name takes.
    vision = AutoModel.from_pretrained(config.models.vision_name)
    lm = AutoModelForCausalLM.from_pretrained(config.models.language_model_name)
    tok = AutoTokenizer.from_pretrained(config.models.tokenizer_name or config.models.language_model_name)
    text = "A large red sphere behind you."
    assert tok.decode(tok(text)["input_ids"]) == text
    return (f"kit at {paths.root}: vision {vision.num_parameters():,} params, "
            f"LM {lm.num_parameters():,} params, tokenizer {len(tok)} tokens")


def _demo(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.kit is None:
        raise UserError(f"{args.config}: the demo needs a kit: section (see configs/tiny.yaml)")
    run_dir = Path(config.experiment.output_dir) / config.experiment.name
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    steps = [("tiny-model kit", _step_kit)]
    t_start = time.perf_counter()
    for name, step in steps:
        t0 = time.perf_counter()
        summary = step(config, run_dir)
        print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {summary}")
    print(f"demo finished in {time.perf_counter() - t_start:.1f}s; run folder: {run_dir}")
    return 0
