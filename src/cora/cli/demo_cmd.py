"""``cora demo``: the demo recipe (:mod:`cora.recipes.demo`) on the embedded default
(configs/tiny.yaml), each step printed as it ends, then the summary."""

from __future__ import annotations

import argparse

from cora.cli.main import UserError
from cora.config import load_config

ORDER = 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the built-in demo end to end on the tiny config")
    parser.add_argument("--config", default="configs/tiny.yaml", help="config with kit: and data.synth sections")
    parser.set_defaults(func=_demo)


def _print_step(name: str, seconds: float, line: str) -> None:
    print(f"[{seconds:6.1f}s] {name}: {line}", flush=True)


def _demo(args: argparse.Namespace) -> int:
    from cora.recipes.demo import DemoError, run_demo

    config = load_config(args.config)
    try:
        outcome = run_demo(config, on_step=_print_step)
    except DemoError as exc:
        raise UserError(str(exc)) from exc
    print(outcome.summary)
    print(f"  summary file: {outcome.summary_file}")
    return 0
