"""``cora`` entry point. Each subcommand lives in its own module with a ``register`` function.

Adding a command = one module in ``cora.cli`` + one name in ``COMMANDS``. The CLI takes
only ``--config``, ``--stage``, ``--resume`` and paths; everything else is YAML.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cora import __version__

logger = logging.getLogger("cora")

# Module names under cora.cli, in --help order.
COMMANDS = ["demo_cmd", "config_cmd", "kit_cmd"]


class UserError(Exception):
    """An error caused by the user's input: printed as one clear message, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cora", description="CORA: panoramic vision-language models (train, eval, generate, serve)."
    )
    parser.add_argument("--version", action="version", version=f"cora {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
