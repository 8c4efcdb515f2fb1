"""``cora sweep SWEEP.yaml [--rows A,B] [--seeds 1,2] [--jobs N]``: train and measure every (row, seed) run
of a sweep (resumable), then write its table (``cora report SWEEP`` prints it again)."""

from __future__ import annotations

import argparse

from cora.cli.main import UserError

ORDER = 15


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="train and evaluate every (row, seed) of a sweep file, then tabulate (resumable)",
        description="Each (row, seed) becomes runs/<sweep>/<row>/seed-<s>/; re-running skips finished runs and "
        "resumes interrupted ones; a failing run is reported and the others go on.",
    )
    parser.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file: base, rows, seeds (see sweeps/)")
    parser.add_argument("--rows", type=_names, help="only these rows (comma separated)")
    parser.add_argument("--seeds", type=_seeds, help="only these seeds (comma separated)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default 1)")
    parser.set_defaults(func=_sweep)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _print(outcome) -> None:  # RunOutcome
    print(f"  {outcome.status:<8} {outcome.row}/seed-{outcome.seed} ({outcome.seconds:.0f}s): {outcome.detail}",
          flush=True)  # fmt: skip


def _sweep(args: argparse.Namespace) -> int:
    from cora.recipes.sweep import SweepError, aggregate, load_sweep, render, run_sweep
    from cora.utils.io import atomic_write_json, atomic_write_text

    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    try:
        spec = load_sweep(args.sweep)
        outcomes = run_sweep(args.sweep, args.rows, args.seeds, args.jobs, on_outcome=_print, on_line=print)
    except SweepError as exc:
        raise UserError(str(exc)) from exc
    agg = aggregate(spec)
    atomic_write_json(spec.root / "report.json", agg)
    for fmt in ("md", "csv"):
        atomic_write_text(spec.root / f"report.{fmt}", render(agg, fmt))
    print(render(agg, "md"), end="")
    failed = [o for o in outcomes if o.status == "failed"]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} runs done; table in {spec.root / 'report.md'}")
    if failed:
        print(f"{len(failed)} failed (traceback in each run's sweep_error.txt):")
        for o in failed:
            print(f"  {o.row}/seed-{o.seed}: {o.detail}")
        return 1
    return 0
