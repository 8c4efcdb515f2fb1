"""Per-stage component modes (SPEC §4): which parts train, freeze, get LoRA or are not used."""

from __future__ import annotations

from typing import Any

from torch import nn

_SIMPLE_MODES = ("full", "frozen", "unused")


def _set(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def _count(module: nn.Module) -> tuple[int, int]:
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def _simple(model: Any, component: str, mode: str) -> None:
    if mode not in _SIMPLE_MODES:
        raise ValueError(f"{component}: mode {mode!r} is not supported; valid: {', '.join(_SIMPLE_MODES)}")
    _set(getattr(model, component), mode == "full")


def apply_stage(model: Any, stage: Any) -> list[dict[str, Any]]:
    """Set ``requires_grad`` and ``model.modes`` from a ``StageConfig``; one table row per component."""
    blocks = stage.vision_trainable_blocks
    model.vision.set_trainable_blocks(blocks)
    modes = {"vision": "frozen" if blocks == 0 else "full" if blocks == -1 else f"last {blocks} blocks"}
    if stage.resampler == "unused":
        raise ValueError("resampler: mode 'unused' is not supported (every stage needs the resampler)")
    for component in ("resampler", "vicreg_projector", "panorama_projector"):
        _simple(model, component, getattr(stage, component))
        modes[component] = getattr(stage, component)
    lm_mode = stage.language_model
    lm = model.language_model
    if lm_mode == "lora":
        lora = stage.lora
        lm.apply_lora(**(lora.model_dump() if lora is not None else {}))
        for name, p in lm.named_parameters():
            p.requires_grad_("lora_" in name)
    else:
        _simple(model, "language_model", lm_mode)
    modes["language_model"] = lm_mode
    model.modes = modes
    for prefix, module in (("vision.", model.vision), ("language_model.", lm)):
        model.ever_trainable.update(prefix + n for n, p in module.named_parameters() if p.requires_grad)
    rows = []
    for component in ("vision", "resampler", "vicreg_projector", "panorama_projector", "language_model"):
        total, trainable = _count(getattr(model, component))
        rows.append({"component": component, "mode": modes[component], "total": total, "trainable": trainable})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`apply_stage` as an aligned text table (millions of parameters)."""
    lines = [f"{'component':<20} {'mode':<15} {'total':>10} {'trainable':>10}"]
    for r in rows:
        lines.append(f"{r['component']:<20} {r['mode']:<15} {r['total'] / 1e6:>9.2f}M {r['trainable'] / 1e6:>9.2f}M")
    total = sum(r["total"] for r in rows)
    trainable = sum(r["trainable"] for r in rows)
    lines.append(f"{'total':<20} {'':<15} {total / 1e6:>9.2f}M {trainable / 1e6:>9.2f}M")
    return "\n".join(lines)
