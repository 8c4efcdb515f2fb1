"""``cora export --run RUN --out DIR [--merge]``: an adapted-VLM run as a deployable folder.

Without ``--merge``: the adapter alone (PEFT LoRA + aligner, or the aligner's weights).
With ``--merge``: LoRA merged into the base and the trained aligner in place, saved with the processor,
so ``<ModelClass>.from_pretrained(DIR)`` and ``AutoProcessor.from_pretrained(DIR)`` load it (no PEFT).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cora.cli.main import UserError

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export an adapted-VLM run: adapter alone, or --merge into the base")
    parser.add_argument("--run", required=True, metavar="RUN", help="trained run folder (runs/<experiment>)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    parser.add_argument("--merge", action="store_true", help="merge LoRA into the base weights + save the processor")
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from cora.adapt.recipes import export_merged, save_adapter
    from cora.adapt.run import load_adapt_run
    from cora.config import load_config
    from cora.training.runner import RunError

    run, out = Path(args.run), Path(args.out)
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run}: not a run folder (no config.yaml)")
    if out.exists():
        raise UserError(f"{out} already exists: choose a new output folder")
    config = load_config(run / "config.yaml")
    if config.adapt is None:
        raise UserError(f"{run}: cora export handles adapted-VLM runs (configs with an adapt: section)")
    try:
        model = load_adapt_run(run, config)
    except RunError as exc:
        raise UserError(str(exc)) from exc
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    if args.merge:
        export_merged(model.adapted, staging)
    else:
        save_adapter(model.adapted, staging)
    staging.rename(out)  # the folder appears whole or not at all
    what = "merged model + processor" if args.merge else "adapter"
    print(f"{what} of {config.adapt.family} written to {out}")
    return 0
