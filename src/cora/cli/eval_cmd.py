"""``cora eval``: predictions (resumable) + COCO caption metrics (+ LLM judge) for a run or a CSV."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cora.cli.main import UserError

ORDER = 50
logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="evaluate a trained run on a test CSV, or score an existing predictions CSV",
        description="Either --checkpoint RUN --test-csv CSV (generate, then score) or --predictions CSV (score). "
        "Writes DIR/predictions.csv (flushed as it goes; a re-run resumes) and DIR/metrics.json. "
        "With an evaluation.judge section in the config, an LLM judge grades the predictions too.",
    )
    parser.add_argument("--checkpoint", metavar="RUN", help="trained run folder (runs/<experiment>)")
    parser.add_argument("--test-csv", metavar="CSV", help="test CSV: url, query, annotation")
    parser.add_argument("--predictions", metavar="CSV", help="existing predictions CSV to score")
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder")
    parser.add_argument("--config", help="config for the evaluation: section (default: the run's config)")
    parser.add_argument("--overwrite", action="store_true", help="start predictions over instead of resuming")
    parser.set_defaults(func=_eval)


def _eval_config(args: argparse.Namespace):
    from cora.config import CoraConfig, load_config

    if args.config:
        return load_config(args.config)
    if args.checkpoint and (Path(args.checkpoint) / "config.yaml").is_file():
        return load_config(Path(args.checkpoint) / "config.yaml")
    return CoraConfig()


def _eval(args: argparse.Namespace) -> int:
    from cora.evaluation.judge import build_judge
    from cora.evaluation.metrics import format_metrics
    from cora.evaluation.runner import evaluate, score_predictions

    if bool(args.predictions) == bool(args.checkpoint):
        raise UserError("give either --predictions CSV, or --checkpoint RUN with --test-csv CSV")
    if args.checkpoint and not args.test_csv:
        raise UserError("--checkpoint needs --test-csv CSV")
    config = _eval_config(args)
    ev = config.evaluation
    # the LLM judge runs when the config has an evaluation.judge section (the CLI takes no behaviour flags)
    judge = build_judge(ev.judge, default_cache_dir=Path(args.out) / "judge_cache") if ev.judge else None
    try:
        if args.predictions:
            result = score_predictions(args.predictions, args.out, metrics=ev.metrics, judge=judge)
        else:
            from cora.evaluation.samples import read_eval_samples

            samples = read_eval_samples(args.test_csv, config.data.bad_row_policy, config.data.cache_dir)
            from cora.cli.runs import run_generator

            generator = run_generator(args.checkpoint, config if args.config else None)
            result = evaluate(
                generator,
                samples,
                args.out,
                batch_size=ev.batch_size,
                flush_every=ev.flush_every,
                metrics=ev.metrics,
                resume=not args.overwrite,
                judge=judge,
            )
    except ValueError as exc:  # bad rows, unknown metric names, not a run folder: the message says which
        raise UserError(str(exc)) from exc
    finally:
        if judge is not None:
            judge.close()
    print(format_metrics(result))
    print(f"metrics: {Path(args.out) / 'metrics.json'}")
    return 0
