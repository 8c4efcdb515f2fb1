"""``cora report RUN...``: one table of the metrics of several runs (Markdown, LaTeX or CSV)."""

from __future__ import annotations

import argparse

from cora.cli.main import UserError

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="aggregate the metrics of several runs into one table")
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folder, eval folder or metrics.json (RUN/metrics.json, RUN/eval/metrics.json)",
    )
    parser.add_argument("--format", choices=["md", "latex", "csv"], default="md", help="table format (default md)")
    parser.add_argument("--out", metavar="FILE", help="write the table to FILE instead of printing it")
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from cora.evaluation.report import ReportError, report
    from cora.utils.io import atomic_write_text

    try:
        table = report(args.runs, fmt=args.format)
    except ReportError as exc:
        raise UserError(str(exc)) from exc
    if args.out:
        atomic_write_text(args.out, table)
        print(f"wrote {args.out}")
    else:
        print(table, end="")
    return 0
