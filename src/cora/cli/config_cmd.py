"""``cora config show|validate``: the resolved configuration."""

from __future__ import annotations

import argparse
import json

from cora.cli.main import UserError
from cora.config import config_to_yaml, load_config

ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="show or validate a configuration")
    cmds = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    show = cmds.add_parser("show", help="print the resolved config (extends merged, defaults filled in)")
    show.add_argument("config", help="YAML config file")
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    show.set_defaults(func=_show)

    validate = cmds.add_parser("validate", help="check a config; exit code 2 with the reason when invalid")
    validate.add_argument("config", help="YAML config file")
    validate.set_defaults(func=_validate)


def _show(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.json:
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        print(config_to_yaml(config), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cora.training.loggers import missing_logger_packages

    config = load_config(args.config)
    if problems := missing_logger_packages(config.training.loggers):
        raise UserError(f"{args.config}: " + "; ".join(problems))
    print(f"{args.config}: valid (experiment {config.experiment.name!r}, stages {config.training.stages})")
    return 0
