"""``cora serve``: the HTTP server (``/v1/answer``, OpenAI-compatible ``/v1/chat/completions``) for a trained run."""

from __future__ import annotations

import argparse
import logging
import os

from cora.cli.main import UserError

ORDER = 46
logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve a trained run over HTTP (answers + OpenAI-compatible chat)",
        description="A page at / (look around a panorama, ask, stop, give feedback); GET /health, "
        "POST /v1/answer (multipart image + query, or JSON with a base64 image), POST /v1/chat/completions "
        "and GET /v1/models (OpenAI format, image_url parts as data: URLs), POST /v1/feedback, /docs. "
        "Decoding options come from the config's evaluation: section.",
    )
    parser.add_argument("--checkpoint", metavar="RUN", required=True, help="trained run folder (runs/<experiment>)")
    parser.add_argument("--config", help="config to use instead of the run's config.yaml")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--allow-paths",
        metavar="DIR",
        help="let JSON requests name image files under DIR (resolved; nothing outside it); off: uploads only",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require 'Authorization: Bearer KEY' on /v1/ requests, KEY read from the environment variable NAME",
    )
    parser.add_argument(
        "--feedback",
        metavar="FILE",
        help="where POST /v1/feedback appends rows (default RUN/feedback/feedback.jsonl; 'off' to refuse it)",
    )
    parser.add_argument("--examples", metavar="DIR", help="a folder of panoramas the page at / offers")
    # defaults: create_app's (8 requests, 10 ms, 64 waiting); the server package is imported only to serve
    batching = parser.add_argument_group("batching (concurrent requests answered together)")
    batching.add_argument("--max-batch", type=int, help="requests per model call (default 8)")
    batching.add_argument("--max-wait-ms", type=float, help="how long a batch waits for company (default 10)")
    batching.add_argument("--max-queue", type=int, help="requests that may wait, more get 503 (default 64)")
    parser.set_defaults(func=_serve)


def build_app(args: argparse.Namespace):  # -> fastapi.FastAPI
    """The app for the parsed arguments (the model loaded once)."""
    from pathlib import Path

    from cora.cli.runs import run_generator
    from cora.config import load_config
    from cora.inference.loading import RunLoadError
    from cora.inference.server import create_app

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UserError(f"cora serve needs the serve extra: pip install 'cora[serve]' ({exc})") from exc
    try:
        generator = run_generator(args.checkpoint, load_config(args.config) if args.config else None)
    except RunLoadError as exc:
        raise UserError(str(exc)) from exc
    run = Path(args.checkpoint).resolve()
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise UserError(f"--api-key-env {args.api_key_env}: that environment variable is not set or empty")
    if args.allow_paths is not None and not Path(args.allow_paths).is_dir():
        raise UserError(f"--allow-paths {args.allow_paths}: not a folder")
    if args.examples is not None and not Path(args.examples).is_dir():
        raise UserError(f"--examples {args.examples}: not a folder")
    feedback = None if args.feedback == "off" else Path(args.feedback or run / "feedback" / "feedback.jsonl")
    # /health names the run, never a path on this machine.
    try:
        return create_app(
            generator,
            model_name=run.name,
            allow_paths=args.allow_paths,
            info={"run": run.name},
            api_key=api_key,
            feedback_file=feedback,
            examples=args.examples,
            **{k: v for k in ("max_batch", "max_wait_ms", "max_queue") if (v := getattr(args, k)) is not None},
        )
    except ValueError as exc:  # the batching limits
        raise UserError(f"cora serve: {exc}") from exc


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    app = build_app(args)
    logger.info("serving %s on http://%s:%d", args.checkpoint, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
