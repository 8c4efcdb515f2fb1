"""Loss curves of a run (or of runs side by side) as a PNG, from the CSV logger's ``metrics.csv`` files.

``cora train`` writes ``<run>/loss_curves.png`` when a run ends; the demo draws its vision and blind runs
together. One panel per stage: training loss (as logged every ``log_every_n_steps``) and held-out loss
(at each validation), against the stage's step, axes labelled.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

Curve = list[tuple[float, float]]
TRAIN_KEY, VAL_KEY = "loss", "val/val_loss"


def read_curve(metrics_csv: str | os.PathLike[str], key: str = TRAIN_KEY) -> Curve:
    """``(step, value)`` pairs of ``key`` from a Lightning CSVLogger ``metrics.csv`` (the stage's own step)."""
    points: Curve = []
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            value, step = row.get(key), row.get("stage_step") or row.get("step")
            if value not in (None, "") and step not in (None, "") and math.isfinite(float(value)):
                points.append((float(step), float(value)))
    return points


def stage_curves(runs: Mapping[str, Path], stage: str) -> dict[str, Curve]:
    """``"<run> train"`` / ``"<run> held-out"`` curves of one stage, for the runs that logged it."""
    curves: dict[str, Curve] = {}
    for label, run_dir in runs.items():
        path = Path(run_dir) / "logs" / stage / "metrics.csv"
        if path.is_file():
            for key, kind in ((TRAIN_KEY, "train"), (VAL_KEY, "held-out")):
                if points := read_curve(path, key):
                    curves[f"{label} {kind}".strip()] = points
    return curves


def write_loss_curves(out: str | os.PathLike[str], runs: Mapping[str, Path], stages: Sequence[str]) -> Path | None:
    """One panel per stage with a logged curve; ``runs`` maps a label to a run folder (``{"": run}`` for one
    run). Written atomically; ``None`` when no stage has anything logged (no CSV logger)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    panels = [(stage, curves) for stage in stages if (curves := stage_curves(runs, stage))]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (stage, curves) in zip(axes[0], panels, strict=True):
        for name, points in curves.items():
            steps, values = zip(*points, strict=True)
            held_out = name.endswith("held-out")
            ax.plot(steps, values, "--o" if held_out else "-", markersize=3, linewidth=1.4, label=name)
        ax.set_title(f"stage {stage}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}-", suffix=out.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return out
