"""``cora train --config CFG [--stage NAME] [--resume auto|PATH]``: the three-stage trainer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cora.cli.main import UserError
from cora.config import CoraConfig, load_config

ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train the stages of a config (resumable)",
        description="Run training.stages in order into runs/<experiment.name>/.",
    )
    parser.add_argument("--config", required=True, help="YAML config")
    parser.add_argument("--stage", default=None, help="run only this stage (loads the previous stages' weights)")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="auto|PATH",
        help="'auto': continue the run in the run folder; PATH: a stage checkpoint to resume from",
    )
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from cora.training.checkpoint import CheckpointError
    from cora.training.loggers import missing_logger_packages
    from cora.training.module import TrainingDiverged
    from cora.training.runner import RunError, train

    config = load_config(args.config)
    if problems := missing_logger_packages(config.training.loggers):
        raise UserError(f"{args.config}: " + "; ".join(problems))
    if config.kit is not None and config.adapt is None:
        # the kit's models, the SynthPano data and the priors the config enables, as `cora demo` prepares them
        from cora.recipes.demo import DemoError, prepare_run

        try:
            config = prepare_run(config, lambda line: print(f"prepare: {line}", flush=True))
        except DemoError as exc:
            raise UserError(f"{args.config}: {exc}") from exc
    if config.adapt is None:  # an adapted VLM loads adapt.model_name, not models.*
        _check_local_models(config, args.config)
    if config.adapt is not None:  # an off-the-shelf VLM: the same runner with the adapt model and data
        from cora.adapt.run import train_adapt

        train = train_adapt
    try:
        result = train(config, stage=args.stage, resume=args.resume)
    except (RunError, CheckpointError, TrainingDiverged) as exc:
        raise UserError(str(exc)) from exc
    for name, summary in result.summaries.items():
        print(
            f"stage {name}: "
            + json.dumps({k: summary[k] for k in ("steps", "samples", "seconds", "samples_per_s")})
            + f" train {json.dumps(summary['train'])} val {json.dumps(summary['val'])}"
        )
    print(f"run folder: {result.run_dir}")
    return 0


def _check_local_models(config: CoraConfig, config_path: str) -> None:
    """A model named by a local path that does not exist is one line naming it (not a hub error)."""
    for key in ("vision_name", "language_model_name"):
        name = getattr(config.models, key)
        local = name.startswith((".", "/", "~")) or name.count("/") >= 2
        if local and not Path(name).expanduser().exists():
            how = f"`cora kit build --config {config_path}`" if config.kit else "a hub name or an existing folder"
            raise UserError(f"{config_path}: models.{key}: {name} does not exist (create it with {how})")
