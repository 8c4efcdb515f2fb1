"""``cora generate``: answer a question about a panorama with a trained run (streaming optional)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from cora.cli.main import UserError

ORDER = 45


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="answer a query about a panorama with a trained run",
        description="Greedy decoding by default; sampling options come from the config's evaluation: section.",
    )
    parser.add_argument("--checkpoint", metavar="RUN", required=True, help="trained run folder (runs/<experiment>)")
    parser.add_argument("--image", metavar="PANO", required=True, help="equirectangular panorama (path)")
    parser.add_argument(
        "--query",
        metavar="TEXT",
        action="append",
        required=True,
        help="the question; repeat for several (answered as one batch)",
    )
    parser.add_argument("--config", help="config to use instead of the run's config.yaml")
    parser.add_argument("--stream", action="store_true", help="print tokens as they are generated (one query)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per query")
    parser.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cora.cli.runs import run_generator
    from cora.config import load_config
    from cora.inference.loading import RunLoadError

    if args.stream and (args.json or len(args.query) > 1):
        raise UserError("--stream prints one answer as it comes: use it with a single --query and without --json")
    if not Path(args.image).is_file():
        raise UserError(f"--image {args.image}: file not found")
    try:
        generator = run_generator(args.checkpoint, load_config(args.config) if args.config else None)
    except RunLoadError as exc:
        raise UserError(str(exc)) from exc
    start = time.perf_counter()
    if args.stream:
        for piece in generator.stream(args.image, args.query[0]):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    ids = generator.generate_ids([args.image] * len(args.query), args.query)
    seconds = time.perf_counter() - start
    for query, tokens in zip(args.query, ids):
        answer = generator.decode(tokens)
        if args.json:
            print(
                json.dumps(
                    {
                        "image": args.image,
                        "query": query,
                        "answer": answer,
                        "tokens": len(tokens),
                        "seconds": round(seconds, 3),
                    }
                )
            )
        else:
            print(answer)
    return 0
