"""``cora data``: generate the built-in SynthPano dataset; validate a CSV/JSONL dataset; fetch the http(s)
images of a CSV/TSV dataset into a local folder."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from cora.cli.main import UserError

ORDER = 30


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="datasets: generate SynthPano, validate CSV/JSONL files, fetch URL images")
    cmds = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = cmds.add_parser("synth", help="write a SynthPano dataset (images, train/val/test CSV + JSONL)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, required=True, help="number of panoramas (split 80/10/10)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    synth.add_argument("--size", default="1024x512", help="ERP size WIDTHxHEIGHT, 2:1 (default 1024x512)")
    synth.set_defaults(func=_synth)
    validate = cmds.add_parser("validate", help="check a CSV/JSONL dataset: rows, images, sizes, bad rows")
    validate.add_argument("file", help="dataset file (.csv or .jsonl)")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="exit code 1 when any row or image is bad (an unusable file is always exit code 2)",
    )
    validate.add_argument("--cache-dir", default=".cora/cache", help="where http(s) images are cached")
    validate.set_defaults(func=_validate)
    _register_fetch(cmds)


def _register_fetch(cmds: argparse._SubParsersAction) -> None:
    fetch = cmds.add_parser(
        "fetch",
        help="download the http(s) images of a CSV/TSV dataset into a folder (resumable)",
        description="Download every distinct http(s) URL of the url/image column into DIR/images/ (kept only "
        "if it decodes as an image; files already there are not downloaded again, so rerun to resume), then "
        "write DIR/<name>.csv (the rows with the column pointing at the local files; rows whose image failed "
        "are left out) and DIR/fetch_failures.csv (url, lines, reason, detail).",
        epilog="exit code: 0 every image fetched or present; 1 some images failed (see DIR/fetch_failures.csv; "
        "run the same command again to retry them); 2 unusable input file (missing, not .csv/.tsv, no url column)",
    )
    fetch.add_argument("file", help="dataset file (.csv or .tsv) whose url (or image) column holds http(s) URLs")
    fetch.add_argument("--out", required=True, metavar="DIR", help="output folder")
    fetch.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    fetch.add_argument("--retries", type=int, default=3, help="retries of timeouts, 429 and 5xx per URL (default 3)")
    fetch.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to connect or wait for more bytes (default 30)",
    )
    fetch.add_argument("--max-mib", type=float, default=64.0, help="refuse an image larger than this (default 64)")
    fetch.set_defaults(func=_fetch)


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not match:
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1024x512")
    width, height = int(match[1]), int(match[2])
    if width != 2 * height or height < 8:
        raise UserError(f"--size {text}: an ERP panorama is 2:1 and at least 16x8")
    return width, height


def _synth(args: argparse.Namespace) -> int:
    from cora.data.synth import write_synth_dataset

    if args.n < 1:
        raise UserError(f"--n {args.n}: need at least one panorama")
    width, height = parse_size(args.size)
    t0 = time.perf_counter()
    summary = write_synth_dataset(args.out, args.n, seed=args.seed, width=width, height=height)
    splits = ", ".join(f"{k} {v['panoramas']} panoramas / {v['rows']} rows" for k, v in summary["splits"].items())
    print(f"SynthPano {width}x{height}, seed {args.seed}: {splits} -> {args.out} ({time.perf_counter() - t0:.1f}s)")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cora.data.validate import format_report, validate_file

    report = validate_file(args.file, cache_dir=args.cache_dir)
    print(format_report(report))
    if report.fatal:  # the file cannot be used at all (missing, unknown format, missing column)
        return 2
    return 1 if args.strict and not report.ok else 0


def _fetch(args: argparse.Namespace) -> int:
    if args.workers < 1 or args.retries < 0 or args.timeout <= 0 or args.max_mib <= 0:
        raise UserError("--workers must be >= 1, --retries >= 0, --timeout and --max-mib > 0")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: not a folder")
    from cora.data.download import fetch_dataset, format_fetch_report

    report = fetch_dataset(
        args.file,
        args.out,
        workers=args.workers,
        retries=args.retries,
        timeout_s=args.timeout,
        max_bytes=int(args.max_mib * 2**20),
    )
    print(format_fetch_report(report))
    return 0 if report.ok else 1
