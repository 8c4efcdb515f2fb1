"""``cora export --run RUN --out DIR [--merge]``: a trained run as a deployable folder.

A native CORA run: every weight (LoRA merged, the vision tower and the LLM as folders inside DIR) and the
processor, so ``AutoModelForImageTextToText.from_pretrained(DIR)`` and ``AutoProcessor.from_pretrained(DIR)``
load it with no base model and no PEFT (``import cora`` registers the classes).

An adapted-VLM run: without ``--merge`` the adapter alone (PEFT LoRA + aligner, or the aligner's weights);
with ``--merge`` LoRA merged into the base and the trained aligner in place, saved with the family's
processor, so ``<ModelClass>.from_pretrained(DIR)`` and ``AutoProcessor.from_pretrained(DIR)`` load it.
Both get a model card (``README.md``) naming the base model, the data and the training recipe.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cora.cli.main import UserError

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export", help="export a run: a self-contained HF folder (adapted VLMs: adapter or --merge)"
    )
    parser.add_argument("--run", required=True, metavar="RUN", help="trained run folder (runs/<experiment>)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    parser.add_argument(
        "--merge", action="store_true", help="adapted VLMs: merge LoRA into the base weights + save the processor"
    )
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from cora.adapt.recipes import export_merged, save_adapter
    from cora.adapt.run import load_adapt_run
    from cora.config import load_config
    from cora.recipes.card import write_model_card
    from cora.training.runner import RunError

    run, out = Path(args.run), Path(args.out)
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run}: not a run folder (no config.yaml)")
    if out.exists():
        raise UserError(f"{out} already exists: choose a new output folder")
    config = load_config(run / "config.yaml")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    if config.adapt is None:
        what = _export_native(run, staging)
    else:
        try:
            model = load_adapt_run(run, config)
        except RunError as exc:
            raise UserError(str(exc)) from exc
        if args.merge:
            export_merged(model.adapted, staging)
        else:
            save_adapter(model.adapted, staging)
        what = f"{'merged model + processor' if args.merge else 'adapter'} of {config.adapt.family}"
    write_model_card(staging, config, run, merged=args.merge or config.adapt is None)
    staging.rename(out)  # the folder appears whole or not at all
    print(f"{what} written to {out}")
    return 0


def _export_native(run: Path, out: Path) -> str:
    from cora.inference.loading import RunLoadError, load_run
    from cora.model.hf import CoraProcessor, save_full

    try:
        model, config = load_run(run)
    except RunLoadError as exc:
        raise UserError(str(exc)) from exc
    save_full(model, out, config)
    CoraProcessor(config, model.tokenizer).save_pretrained(out)
    return "CORA model (every weight, LoRA merged) + processor"
