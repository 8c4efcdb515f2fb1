"""Loss curves of a run as a self-contained SVG (no plotting library needed)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from cora.utils.io import atomic_write_text

W, H, PAD = 360, 220, 36


def read_curve(metrics_csv: Path, key: str = "loss") -> list[tuple[float, float]]:
    """(step, value) pairs of ``key`` from a Lightning CSVLogger ``metrics.csv``."""
    points = []
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            value, step = row.get(key), row.get("stage_step") or row.get("step")
            if value not in (None, "") and step not in (None, ""):
                points.append((float(step), float(value)))
    return points


def _panel(x0: int, title: str, curves: dict[str, list[tuple[float, float]]]) -> str:
    values = [v for pts in curves.values() for _, v in pts if math.isfinite(v)]
    steps = [s for pts in curves.values() for s, _ in pts]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    s_lo, s_hi = min(steps), max(max(steps), min(steps) + 1)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [
        f'<g transform="translate({x0},0)"><rect x="{PAD}" y="{PAD // 2}" width="{W - PAD - 8}" '
        f'height="{H - PAD - PAD // 2}" fill="none" stroke="#999"/>',
        f'<text x="{W // 2}" y="12" font-size="11" text-anchor="middle">{title}</text>',
        f'<text x="2" y="{PAD // 2 + 8}" font-size="9">{hi:.3g}</text>',
        f'<text x="2" y="{H - PAD}" font-size="9">{lo:.3g}</text>',
        f'<text x="{W // 2}" y="{H - 6}" font-size="9" text-anchor="middle">step</text>',
    ]
    for i, (name, pts) in enumerate(curves.items()):
        xy = " ".join(
            f"{PAD + (s - s_lo) / (s_hi - s_lo) * (W - PAD - 8):.1f},"
            f"{PAD // 2 + (hi - v) / (hi - lo) * (H - PAD - PAD // 2):.1f}"
            for s, v in pts
        )
        colour = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{xy}"/>')
        parts.append(
            f'<text x="{W - 12}" y="{PAD // 2 + 12 + 11 * i}" font-size="9" fill="{colour}" '
            f'text-anchor="end">{name}</text>'
        )
    return "".join(parts) + "</g>"


def write_loss_plot(out: Path, runs: dict[str, Path], stages: list[str]) -> Path:
    """One panel per stage, one curve per run (``{"vision": runs/x, "blind": runs/x-blind}``)."""
    panels = []
    for i, stage in enumerate(stages):
        curves = {}
        for label, run_dir in runs.items():
            path = Path(run_dir) / "logs" / stage / "metrics.csv"
            if path.is_file():
                curves[label] = read_curve(path)
        panels.append(_panel(i * W, f"stage {stage}: training loss", curves))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(stages)}" height="{H}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>{"".join(panels)}</svg>\n'
    )
    atomic_write_text(out, svg)
    return Path(out)
