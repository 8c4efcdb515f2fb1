"""``cora kit build``: the offline tiny models and tokenizer, saved as HF folders."""

from __future__ import annotations

import argparse

from cora.cli.main import UserError
from cora.config import load_config

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("kit", help="the offline tiny-model kit")
    cmds = parser.add_subparsers(dest="kit_command", metavar="ACTION", required=True)
    build = cmds.add_parser("build", help="build tokenizer, vision tower and LLM from the config's kit section")
    build.add_argument("--config", default="configs/tiny.yaml", help="config with a kit: section")
    build.add_argument("--out", default=None, help="output folder (default: kit.out_dir)")
    build.add_argument("--force", action="store_true", help="rebuild even when the kit is up to date")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from cora.kit import build_kit

    config = load_config(args.config)
    if config.kit is None:
        raise UserError(f"{args.config}: has no kit: section (see configs/tiny.yaml)")
    paths = build_kit(config.kit, out_dir=args.out, seed=config.experiment.seed, force=args.force)
    print(f"vision tower:   {paths.vision}")
    print(f"language model: {paths.language_model}")
    return 0
