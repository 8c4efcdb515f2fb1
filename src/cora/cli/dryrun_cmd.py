"""``cora dry-run``: build the model, count parameters per component and stage, count vision
tokens per stitching mode, and (for models small enough for this machine) run one random
batch through every stage, forward and backward."""

from __future__ import annotations

import argparse
import json
import logging

import torch

from cora.cli.main import UserError
from cora.config import load_config

ORDER = 30
# Above this many parameters the random batch is skipped (counts come from the meta device).
MAX_RUN_PARAMS = 300_000_000

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dry-run", help="parameter table, vision-token counts and one batch per stage")
    parser.add_argument("--config", required=True, help="YAML config")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_run)


def _ensure_kit(cfg) -> None:
    from pathlib import Path

    if cfg.kit is None:
        return
    names = [cfg.models.vision_name, cfg.models.language_model_name]
    if any(str(Path(cfg.kit.out_dir)) in str(Path(n)) and not Path(n).exists() for n in names):
        from cora.kit import build_kit

        build_kit(cfg.kit, seed=cfg.experiment.seed)


def _random_batch(model, geometries, size: int) -> dict:
    tok = model.tokenizer
    text = f"{model.language_model.vision_token} What is in this panorama? A room with a window."
    ids = torch.tensor([tok(text)["input_ids"]])
    labels = ids.clone()
    labels[ids == model.language_model.vision_token_id] = -100
    return {
        "pixel_values": torch.rand(1, len(geometries), 3, size, size),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
    }


def _run_stages(model, cfg, geometries) -> dict:
    results = {}
    batch = _random_batch(model, geometries, cfg.image_processing.image_size)
    for name in cfg.training.stages:
        model.set_stage(cfg.training.stage_configs[name])
        model.zero_grad(set_to_none=True)
        out = model(batch["pixel_values"], geometries, batch["input_ids"], batch["attention_mask"], batch["labels"])
        terms = []
        if out.loss is not None:
            terms.append(out.loss)
        if out.overlap_features is not None:
            terms.append(out.overlap_features.float().pow(2).mean())  # a stand-in objective: gradients flow?
        if not terms:
            raise RuntimeError(f"stage {name}: the model produced neither an LM loss nor overlap features")
        sum(terms).backward()
        with_grad = sum(p.numel() for p in model.parameters() if p.requires_grad and p.grad is not None)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        results[name] = {
            "lm_loss": None if out.loss is None else round(float(out.loss.detach()), 4),
            "overlap_features": None if out.overlap_features is None else list(out.overlap_features.shape),
            "vision_tokens": out.vision_tokens,
            "trainable": trainable,
            "trainable_with_grad": with_grad,
        }
        if with_grad != trainable:
            raise RuntimeError(f"stage {name}: {trainable - with_grad} trainable parameters got no gradient")
    return results


def _run(args: argparse.Namespace) -> int:
    from cora.model import build_model
    from cora.model.report import format_parameter_table, stage_parameter_table, token_counts
    from cora.processors.views import plan_views

    cfg = load_config(args.config)
    _ensure_kit(cfg)
    try:
        meta_model = build_model(cfg, meta=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"{args.config}: the model could not be built: {exc}") from exc
    geometries = plan_views(cfg.image_processing)
    stages = {name: cfg.training.stage_configs[name] for name in cfg.training.stages}
    table = stage_parameter_table(meta_model, stages)
    report = {
        "config": str(args.config),
        "parameters": table,
        "vision_tokens": token_counts(meta_model, geometries),
        "stitching": cfg.models.projector.stitching,
        "views": len(geometries),
    }
    total = sum(r["total"] for r in table)
    if total <= MAX_RUN_PARAMS:
        model = build_model(cfg)
        report["stage_runs"] = _run_stages(model, cfg, geometries)
    else:
        report["stage_runs"] = None
        report["stage_runs_skipped"] = (
            f"{total / 1e6:.0f}M parameters > {MAX_RUN_PARAMS / 1e6:.0f}M: counted on the "
            f"meta device only, no batch run on this machine"
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_parameter_table(table))
    counts = report["vision_tokens"]
    print(
        f"\nvision tokens ({len(geometries)} views): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"  [configured: {report['stitching']}]"
    )
    if report["stage_runs"] is None:
        print(f"\nstage runs skipped: {report['stage_runs_skipped']}")
    else:
        for name, r in report["stage_runs"].items():
            print(
                f"stage {name}: ok (lm_loss {r['lm_loss']}, overlap_features {r['overlap_features']}, "
                f"vision tokens {r['vision_tokens']}, {r['trainable_with_grad'] / 1e6:.3f}M params got gradients)"
            )
    return 0
