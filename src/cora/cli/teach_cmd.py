"""``cora teach``: pseudo-label panoramas with a teacher VLM endpoint into a training CSV."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cora.cli.main import UserError

ORDER = 47


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "teach",
        help="caption panoramas view by view with a teacher VLM endpoint -> training CSV",
        description="The endpoint, prompts and views come from the config's teacher: section. "
        "Answers are cached next to --out: running again resumes.",
    )
    parser.add_argument("--config", required=True, help="config with a teacher: section")
    parser.add_argument(
        "--images",
        metavar="DIR_OR_CSV",
        required=True,
        help="a folder of panoramas, or a CSV/JSONL dataset (its distinct images)",
    )
    parser.add_argument("--out", metavar="CSV", required=True, help="training CSV to write (url,query,annotation)")
    parser.set_defaults(func=_teach)


def _teach(args: argparse.Namespace) -> int:
    from cora.config import load_config
    from cora.evaluation.teacher import TeacherError, build_teacher, list_panoramas, teach

    cfg = load_config(args.config)
    if cfg.teacher is None:
        raise UserError(f"{args.config}: no teacher: section (url, model, api_key_env; see `cora config show`)")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise UserError(f"--out {out}: expected a .csv file name")
    try:
        images = list_panoramas(args.images, cfg.data.cache_dir)
    except TeacherError as exc:
        raise UserError(f"--images: {exc}") from exc
    try:
        with build_teacher(cfg, cache_dir=out.with_name(out.stem + ".teacher_cache")) as teacher:
            result = teach(teacher, images, out, cfg.teacher.query)
    except TeacherError as exc:
        raise UserError(f"{exc} (the answers so far are cached: the same command resumes)") from exc
    print(json.dumps({k: result[k] for k in ("panoramas", "rows", "out")} | {"empty": len(result["empty"])}))
    return 0
