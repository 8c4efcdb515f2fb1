"""``cora`` entry point. Each subcommand lives in its own module with a ``register`` function.

Adding a command = one module ``cora/cli/<name>_cmd.py`` with ``register(sub)`` and an
optional ``ORDER`` (its place in ``--help``); it is found by name, no list to edit. The CLI
takes only ``--config``, ``--stage``, ``--resume`` and paths; everything else is YAML.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from cora import __version__

logger = logging.getLogger("cora")


def command_modules() -> list[str]:
    """Every ``*_cmd`` module of ``cora.cli``, in ``--help`` order (``ORDER``, then name)."""
    import cora.cli

    names = [m.name for m in pkgutil.iter_modules(cora.cli.__path__) if m.name.endswith("_cmd")]
    mods = [importlib.import_module(f"cora.cli.{n}") for n in names]
    return [m.__name__.rsplit(".", 1)[1] for m in sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))]


class UserError(Exception):
    """An error caused by the user's input: printed as one clear message, exit code 2."""


# Errors whose message already names the file, row or field at fault: shown as one line
# (exit 2) instead of a traceback. Looked up lazily so `cora --help` imports no torch.
_INPUT_ERRORS = [
    ("cora.data.records", "DataError"),
    ("cora.processors.image_io", "ImageError"),
    ("cora.processors.text", "ChatTemplateError"),
    ("cora.evaluation.predictions", "PredictionsError"),
    ("cora.evaluation.report", "ReportError"),
    ("cora.evaluation.judge", "JudgeError"),
    ("cora.inference.loading", "RunLoadError"),
    ("cora.training.runner", "RunError"),
    ("cora.training.checkpoint", "CheckpointError"),
    ("cora.adapt.health", "HealthCheckError"),
    ("cora.evaluation.teacher", "TeacherError"),
]


def _is_input_error(exc: BaseException) -> bool:
    for module, name in _INPUT_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cora", description="CORA: panoramic vision-language models (train, eval, generate, serve)."
    )
    parser.add_argument("--version", action="version", version=f"cora {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(f"cora.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from cora.config import ConfigError
    from cora.utils.logging import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UserError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not _is_input_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run as `python -m cora.cli.main`, this file is `__main__`, a second copy of the module
    # whose UserError the commands never raise: go through the imported module instead.
    from cora.cli.main import main as _main

    sys.exit(_main())
