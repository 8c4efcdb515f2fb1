"""The demo's closing comparison of the vision run and the blind run."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def verdict(vision: dict[str, float], blind: dict[str, float]) -> str:
    """Whether seeing the panorama clearly helped: held-out loss at least 2% lower, or accuracy 5 points higher."""
    loss_gain = (blind["heldout_loss"] - vision["heldout_loss"]) / blind["heldout_loss"]
    acc_gain = vision["answer_accuracy"] - blind["answer_accuracy"]
    clear = loss_gain >= 0.02 or acc_gain >= 0.05
    word = "clearly helps" if clear else "makes no clear difference"
    return f"seeing the panorama {word}: held-out loss {loss_gain:+.1%} relative, accuracy {acc_gain * 100:+.1f} points"


def type_table(vision: dict[str, dict], blind: dict[str, dict]) -> list[str]:
    """Per question type: where seeing the panorama helps and where it does not (yet)."""

    def acc(row: dict) -> str:
        return "-" if row["accuracy"] is None else f"{row['accuracy']:.0%}"

    lines = [
        "  per question type (held-out):",
        f"    {'type':<12} {'n':>3} {'vision loss':>11} {'blind loss':>10} {'vision acc':>10} {'blind acc':>9}",
    ]
    for kind, row in vision.items():
        other = blind.get(kind, {"loss": float("nan"), "accuracy": None})
        lines.append(
            f"    {kind:<12} {row['questions']:>3} {row['loss']:>11.3f} {other['loss']:>10.3f} "
            f"{acc(row):>10} {acc(other):>9}"
        )
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def rl_table(results: dict[str, Any]) -> list[str]:
    """Exact-match accuracy per question type before and after the rl stage, vision and blind."""
    runs = [results.get(k) for k in ("eval_vision_before_rl", "eval_vision", "eval_blind_before_rl", "eval_blind")]
    if runs[0] is None or runs[2] is None:
        return []
    lines = [
        "  exact match before → after the rl stage (held-out):",
        f"    {'type':<12} {'n':>4} {'vision':>13} {'blind':>13}",
    ]
    for kind, row in runs[1]["by_type"].items():
        if row["accuracy"] is None:
            continue
        accs = [r["by_type"].get(kind, {}).get("accuracy") for r in runs]
        lines.append(
            f"    {kind:<12} {row['questions']:>4} {_pct(accs[0]):>5} → {_pct(accs[1]):<5} {_pct(accs[2]):>5} → "
            f"{_pct(accs[3]):<5}"
        )
    for label, key in (("all", "answer_accuracy"), ("seam", "seam_accuracy")):
        accs = [r.get(key) for r in runs]
        lines.append(
            f"    {label:<12} {'':>4} {_pct(accs[0]):>5} → {_pct(accs[1]):<5} {_pct(accs[2]):>5} → {_pct(accs[3]):<5}"
        )
    return lines


def summary_text(results: dict[str, Any], run_dir: Path, seconds: float) -> str:
    """The closing table: both runs' held-out numbers, the verdict (``results["verdict"]``), where things are."""
    vis, blind = results["eval_vision"], results["eval_blind"]
    lines = [
        "",
        "CORA demo summary (held-out SynthPano test split)",
        f"  {'run':<8} {'answer loss':>12} {'accuracy':>9}  predictions",
        f"  {'vision':<8} {vis['heldout_loss']:>12.3f} {vis['answer_accuracy']:>9.1%}  {vis['predictions']}",
        f"  {'blind':<8} {blind['heldout_loss']:>12.3f} {blind['answer_accuracy']:>9.1%}  {blind['predictions']}",
        f"  {results['verdict']}",
        f"  seam subset: vision {_pct(vis.get('seam_accuracy'))}, blind {_pct(blind.get('seam_accuracy'))}",
        *type_table(vis["by_type"], blind["by_type"]),
        *rl_table(results),
        f"  run folder: {run_dir} (stage_state.json, checkpoints/, logs/, model/)",
        f"  blind run:  {run_dir.parent / (run_dir.name + '-blind')}",
        f"  loss curves: {results['plot']}   metrics: {vis['metrics_json']}",
        f"  total time {seconds:.0f}s",
    ]
    return "\n".join(lines)
