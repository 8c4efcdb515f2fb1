"""``cora report RUN...``: one table of the metrics of several runs (Markdown, LaTeX or CSV);
``cora report SWEEP`` (a sweep file or its folder): the sweep's table, mean ± std over seeds and each row
against the reference row (paired, 95% bootstrap interval over test questions)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cora.cli.main import UserError

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="aggregate the metrics of several runs into one table")
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folder, eval folder or metrics.json (RUN/metrics.json, RUN/eval/metrics.json); or one sweep "
        "file / sweep folder (runs/<sweep>, holding sweep.json)",
    )
    parser.add_argument("--reference", help="sweep: the row the others are compared with (default: the sweep's)")
    parser.add_argument("--format", choices=["md", "latex", "csv"], default="md", help="table format (default md)")
    parser.add_argument("--out", metavar="FILE", help="write the table to FILE instead of printing it")
    parser.set_defaults(func=_report)


def _sweep_file(runs: list[str]) -> Path | None:
    """The sweep file named by a single argument: the file itself, or the source recorded in a sweep folder."""
    if len(runs) != 1:
        return None
    path = Path(runs[0])
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return path
    record = path / "sweep.json"
    if record.is_file():
        return Path(json.loads(record.read_text())["source"])
    return None


def _sweep_table(sweep: Path, args: argparse.Namespace) -> str:
    from cora.recipes.sweep import SweepError, aggregate, load_sweep, render

    try:
        return render(aggregate(load_sweep(sweep), args.reference), args.format)
    except (SweepError, ValueError) as exc:
        raise UserError(str(exc)) from exc


def _report(args: argparse.Namespace) -> int:
    from cora.evaluation.report import ReportError, report
    from cora.utils.io import atomic_write_text

    sweep = _sweep_file(args.runs)
    try:
        table = _sweep_table(sweep, args) if sweep is not None else report(args.runs, fmt=args.format)
    except ReportError as exc:
        raise UserError(str(exc)) from exc
    if args.out:
        atomic_write_text(args.out, table)
        print(f"wrote {args.out}")
    else:
        print(table, end="")
    return 0
