"""Result tables: metrics of several runs side by side (rows = runs, columns = metrics, best in bold)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cora.evaluation.metrics import METRICS

COLUMNS: dict[str, str] = {**{k: v.label for k, v in METRICS.items()}, "judge": "Judge"}
FORMATS = ("md", "latex", "csv")


class ReportError(ValueError):
    """A run whose metrics cannot be found or read."""


@dataclass(frozen=True)
class RunMetrics:
    name: str
    path: Path
    values: dict[str, float | None]


def find_metrics(run: str | os.PathLike[str]) -> Path:
    """``metrics.json`` of a run: the file itself, ``RUN/metrics.json``, ``RUN/eval/metrics.json``,
    or the only ``RUN/*/metrics.json``."""
    path = Path(run)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ReportError(f"{path}: no such run folder or metrics file")
    for candidate in (path / "metrics.json", path / "eval" / "metrics.json"):
        if candidate.is_file():
            return candidate
    found = sorted(path.glob("*/metrics.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ReportError(f"{path}: no metrics.json (run `cora eval ... --out {path}` first)")
    raise ReportError(f"{path}: several metrics.json ({', '.join(str(f) for f in found)}): name one of them")


def load_run(run: str | os.PathLike[str]) -> RunMetrics:
    path = find_metrics(run)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object of metrics")
    values: dict[str, float | None] = {}
    for key in COLUMNS:
        value = data.get(key)
        if value is not None and not isinstance(value, int | float):
            raise ReportError(f"{path}: field {key!r} is {value!r}, not a number or null")
        values[key] = None if value is None else float(value)
    # name: the run folder (metrics in RUN/eval/ or RUN/<x>/ still belong to RUN)
    base = Path(run)
    name = base.stem if base.is_file() else base.resolve().name
    return RunMetrics(name, path, values)


def load_runs(runs: Sequence[str | os.PathLike[str]]) -> list[RunMetrics]:
    loaded = [load_run(r) for r in runs]
    names = [r.name for r in loaded]
    if len(set(names)) < len(names):  # same folder names in different places: use the paths
        loaded = [RunMetrics(str(Path(r).resolve()), m.path, m.values) for r, m in zip(runs, loaded)]
    return loaded


def _columns(runs: Sequence[RunMetrics]) -> list[str]:
    """Metric columns that at least one run has a value for (in the fixed order)."""
    return [k for k in COLUMNS if any(r.values.get(k) is not None for r in runs)]


def _best(runs: Sequence[RunMetrics], key: str) -> float | None:
    values = [r.values[key] for r in runs if r.values.get(key) is not None]
    return max(values) if values else None


def render(runs: Sequence[RunMetrics], fmt: str = "md", digits: int = 4) -> str:
    """The table as Markdown, LaTeX (booktabs) or CSV. Higher is better for every metric."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {list(FORMATS)}")
    cols = _columns(runs)
    best = {k: _best(runs, k) for k in cols}

    def cell(run: RunMetrics, key: str, bold: Callable[[str], str], missing: str) -> str:
        value = run.values.get(key)
        if value is None:
            return missing
        text = f"{value:.{digits}f}"
        # ties as printed are all bold
        return bold(text) if len(runs) > 1 and text == f"{best[key]:.{digits}f}" else text

    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["run", *cols])
        for r in runs:
            writer.writerow([r.name, *[cell(r, k, lambda t: t, "") for k in cols]])
        return buffer.getvalue()
    if fmt == "md":
        lines = ["| run | " + " | ".join(COLUMNS[k] for k in cols) + " |", "|---|" + "---:|" * len(cols)]
        for r in runs:
            lines.append(f"| {r.name} | " + " | ".join(cell(r, k, lambda t: f"**{t}**", "–") for k in cols) + " |")
        return "\n".join(lines) + "\n"
    lines = [
        r"\begin{tabular}{l" + "r" * len(cols) + "}",
        r"\toprule",
        "Run & " + " & ".join(_latex_escape(COLUMNS[k]) for k in cols) + r" \\",
        r"\midrule",
    ]
    for r in runs:
        cells = [cell(r, k, lambda t: rf"\textbf{{{t}}}", "--") for k in cols]
        lines.append(_latex_escape(r.name) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}


def _latex_escape(text: str) -> str:
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX[m.group(0)], text)


def report(runs: Sequence[str | os.PathLike[str]], fmt: str = "md", digits: int = 4) -> str:
    """Load each run's metrics and render one table."""
    if not runs:
        raise ReportError("no runs given")
    return render(load_runs(runs), fmt=fmt, digits=digits)


def as_dicts(runs: Sequence[RunMetrics]) -> list[dict[str, Any]]:
    return [{"run": r.name, "metrics": str(r.path), **r.values} for r in runs]
