"""Parameter tables and vision-token counts (``cora dry-run``, training logs)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from cora.model.stages import COMPONENTS
from cora.model.stitching import STITCHING_MODES, plan_stitching
from cora.model.vlm import PanoramaVLM
from cora.processors.geometry import ViewGeometry


def stage_parameter_table(model: PanoramaVLM, stages: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per component: ``total`` and, per stage name, ``mode`` and ``trainable``.

    Applies each stage to a deep copy when the model holds real weights, so the model itself
    is untouched; a meta-device model is applied in place (LoRA is injected once and kept).
    """
    rows = {c: {"component": c, "total": 0, "stages": {}} for c in COMPONENTS}
    for name, stage in stages.items():
        target = model if _is_meta(model) else copy.deepcopy(model)
        for row in target.set_stage(stage):
            entry = rows[row["component"]]
            entry["stages"][name] = {"mode": row["mode"], "trainable": row["trainable"]}
    for component in COMPONENTS:
        # The frozen base size (LoRA adapters counted as trainable extras, not in "total").
        rows[component]["total"] = sum(
            p.numel() for n, p in getattr(model, component).named_parameters() if "lora_" not in n
        )
    return list(rows.values())


def _is_meta(model: torch.nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def token_counts(model: PanoramaVLM, geometries: Sequence[ViewGeometry]) -> dict[str, int]:
    """Vision tokens the LLM sees per stitching mode, for these views."""
    rows, cols = model.resampler.out_grid(model.vision.grid, model.vision.grid)
    return {mode: plan_stitching(list(geometries), rows, cols, mode).num_tokens for mode in STITCHING_MODES}


def format_parameter_table(rows: list[dict[str, Any]]) -> str:
    stages = list(rows[0]["stages"]) if rows else []
    head = f"{'component':<20} {'params':>10}" + "".join(f" {s + ' (trainable)':>26}" for s in stages)
    lines = [head]
    for r in rows:
        cells = "".join(f" {r['stages'][s]['trainable'] / 1e6:>9.2f}M {r['stages'][s]['mode']:<15}" for s in stages)
        lines.append(f"{r['component']:<20} {r['total'] / 1e6:>9.2f}M" + cells)
    total = sum(r["total"] for r in rows)
    cells = "".join(f" {sum(r['stages'][s]['trainable'] for r in rows) / 1e6:>9.2f}M {'':<15}" for s in stages)
    lines.append(f"{'total':<20} {total / 1e6:>9.2f}M" + cells)
    return "\n".join(lines)
