"""A sweep's table: per row, mean ± std over seeds of every measure, and each row against the reference row.

The comparison is paired: the same seeds and the same test questions. Its interval is a 95% bootstrap
over test questions (questions resampled with replacement, the statistic recomputed from the
per-question records of every paired seed), so it reflects how much the difference depends on which
questions were asked, on top of the seed-to-seed spread the ± shows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cora.recipes.sweep.measure import QUESTIONS
from cora.recipes.sweep.run import RESULT
from cora.recipes.sweep.spec import SweepSpec

CAPTION_METRICS = ("bleu4", "meteor", "rouge_l", "cider", "spice")
FORMATS = ("md", "latex", "csv")


def _mean_std(values: Sequence[float | None]) -> tuple[float, float, int] | None:
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0, len(xs)


def _row_measures(results: dict[int, dict]) -> dict[str, Any]:
    """Every measure of one row: mean, std, seeds."""

    def get(path: Sequence[str]) -> list[float | None]:
        out = []
        for r in results.values():
            node: Any = r
            for p in path:
                node = node.get(p) if isinstance(node, dict) else None
            out.append(node if isinstance(node, int | float) else None)
        return out

    measures = {
        "answer_loss": get(("measures", "all", "answer_loss")),
        "exact_match": get(("measures", "all", "exact_match")),
        "seam_exact_match": get(("measures", "seam", "exact_match")),
        "no_seam_exact_match": get(("measures", "no_seam", "exact_match")),
        "yaw_error_deg": get(("measures", "yaw_error_deg", "mean")),
        **{m: get(("metrics", m)) for m in CAPTION_METRICS},
    }
    types = sorted({t for r in results.values() for t in r.get("measures", {}).get("by_type", {})})
    measures |= {f"type:{t}": get(("measures", "by_type", t, "exact_match")) for t in types}
    return {k: s for k, v in measures.items() if (s := _mean_std(v)) is not None}


def _load_questions(run_dir: Path) -> dict[tuple[str, str], dict]:
    rows = [json.loads(line) for line in (run_dir / "eval" / QUESTIONS).read_text().splitlines() if line]
    return {(r["url"], r["query"]): r for r in rows}


def _arrays(questions: dict[tuple[str, str], dict], keys: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    rows = [questions[k] for k in keys]
    return {
        "em": np.array([np.nan if r["exact_match"] is None else float(r["exact_match"]) for r in rows]),
        "loss": np.array([r["loss_sum"] for r in rows], dtype=np.float64),
        "tokens": np.array([r["tokens"] for r in rows], dtype=np.float64),
        "seam": np.array([r["seam"] is True for r in rows]),
    }


def _stat(pairs: list[tuple[dict, dict]], idx: np.ndarray, what: str) -> float:
    """Mean over paired seeds of (row − reference) on the questions ``idx``."""
    diffs = []
    for row, ref in pairs:
        if what == "loss" and not (row["tokens"][idx].sum() and ref["tokens"][idx].sum()):
            diffs.append(np.nan)  # no teacher-forced loss (adapted VLMs): nothing to compare
        elif what == "loss":
            diffs.append(
                row["loss"][idx].sum() / row["tokens"][idx].sum() - ref["loss"][idx].sum() / ref["tokens"][idx].sum()
            )
        else:
            mask = ~np.isnan(row["em"][idx]) & (row["seam"][idx] if what == "seam_em" else True)
            diffs.append(float(np.mean(row["em"][idx][mask] - ref["em"][idx][mask])) if mask.any() else np.nan)
    return float(np.mean(diffs))


def compare(spec: SweepSpec, row: str, reference: str, n_boot: int = 2000, seed: int = 0) -> dict[str, Any] | None:
    """Paired difference row − reference (answer loss, exact match, exact match on the seam subset) with
    a 95% bootstrap interval over test questions; None when no seed has finished in both rows."""
    pairs, keys = [], None
    for s in spec.seeds:
        a, b = spec.run_dir(row, s), spec.run_dir(reference, s)
        if not ((a / RESULT).is_file() and (b / RESULT).is_file()):
            continue
        qa, qb = _load_questions(a), _load_questions(b)
        keys = sorted(set(qa) & set(qb)) if keys is None else sorted(set(keys) & set(qa) & set(qb))
        pairs.append((qa, qb))
    if not pairs or not keys:
        return None
    arrays = [(_arrays(qa, keys), _arrays(qb, keys)) for qa, qb in pairs]
    rng = np.random.default_rng(seed)
    everything = np.arange(len(keys))
    boots = [rng.integers(0, len(keys), len(keys)) for _ in range(n_boot)]
    out: dict[str, Any] = {"seeds": len(pairs), "questions": len(keys)}
    for what in ("loss", "em", "seam_em"):
        point = _stat(arrays, everything, what)
        samples = np.array([_stat(arrays, idx, what) for idx in boots])
        samples = samples[~np.isnan(samples)]
        lo, hi = np.percentile(samples, [2.5, 97.5]) if len(samples) else (np.nan, np.nan)
        out[what] = {"diff": point, "ci95": [float(lo), float(hi)]}
    return out


def aggregate(spec: SweepSpec, reference: str | None = None, n_boot: int = 2000) -> dict[str, Any]:
    """Per row: its measures over the finished seeds; against ``reference`` (default: the sweep's): the
    paired comparison."""
    reference = reference or spec.reference
    if reference is not None and reference not in spec.rows:
        raise ValueError(f"reference {reference!r} is not a row of {spec.source} ({', '.join(spec.rows)})")
    rows = {}
    for row in spec.rows:
        results = {}
        for s in spec.seeds:
            path = spec.run_dir(row, s) / RESULT
            if path.is_file():
                results[s] = json.loads(path.read_text())
        entry: dict[str, Any] = {"seeds": sorted(results), "measures": _row_measures(results)}
        if reference is not None and row != reference and results:
            entry["vs_reference"] = compare(spec, row, reference, n_boot)
        rows[row] = entry
    return {"sweep": spec.name, "reference": reference, "rows": rows}


def _pm(cell: tuple[float, float, int] | None, digits: int, scale: float = 1.0) -> str:
    if cell is None:
        return "–"
    mean, std, _ = cell
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _delta(cmp: dict | None, what: str, digits: int, scale: float = 1.0) -> str:
    if not cmp or np.isnan(cmp[what]["diff"]):
        return "–"
    d, (lo, hi) = cmp[what]["diff"] * scale, cmp[what]["ci95"]
    return f"{d:+.{digits}f} [{lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}]"


def _columns(agg: dict[str, Any]) -> tuple[list[str], list[str], bool]:
    rows = agg["rows"].values()
    types = sorted({k for r in rows for k in r["measures"] if k.startswith("type:")})
    metrics = [m for m in CAPTION_METRICS if any(m in r["measures"] for r in rows)]
    return types, metrics, any("yaw_error_deg" in r["measures"] for r in rows)


def table_rows(agg: dict[str, Any], per_type: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the table (exact match in percent); ``per_type``: a column per question type."""
    types, metrics, yaw = _columns(agg)
    ref = agg["reference"]
    header = ["row", "seeds", "answer loss", "exact match %", "seam EM %", "no-seam EM %"]
    header += [m.upper() for m in metrics] + (["yaw error °"] if yaw else [])
    if ref:
        header += [f"Δ loss vs {ref} [95% CI]", f"Δ EM pts vs {ref} [95% CI]", f"Δ seam EM pts vs {ref} [95% CI]"]
    header += [t.removeprefix("type:") + " EM %" for t in types] if per_type else []
    body = []
    for name, r in agg["rows"].items():
        m = r["measures"]
        cells = [name, str(len(r["seeds"])), _pm(m.get("answer_loss"), 3), _pm(m.get("exact_match"), 1, 100),
                 _pm(m.get("seam_exact_match"), 1, 100), _pm(m.get("no_seam_exact_match"), 1, 100),
                 *[_pm(m.get(k), 3) for k in metrics]]  # fmt: skip
        cells += [_pm(m.get("yaw_error_deg"), 1)] if yaw else []
        if ref:
            cmp = r.get("vs_reference")
            label = "(reference)" if name == ref else None
            cells += [label or _delta(cmp, "loss", 3), label or _delta(cmp, "em", 1, 100),
                      label or _delta(cmp, "seam_em", 1, 100)]  # fmt: skip
        cells += [_pm(m.get(t), 1, 100) for t in types] if per_type else []
        body.append(cells)
    return header, body


def type_rows(agg: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Exact match (%) per question type, one row per sweep row."""
    types, _, _ = _columns(agg)
    header = ["row", *[t.removeprefix("type:") for t in types]]
    return header, [[name, *[_pm(r["measures"].get(t), 1, 100) for t in types]] for name, r in agg["rows"].items()]


def _markdown(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def _latex(header: list[str], body: list[list[str]]) -> list[str]:
    from cora.evaluation.report import _latex_escape

    def tex(text: str) -> str:
        return _latex_escape(text).replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("–", "--")

    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule", " & ".join(map(tex, header)) + r" \\"]
    return [*lines, "\\midrule", *[" & ".join(map(tex, c)) + r" \\" for c in body], r"\bottomrule", r"\end{tabular}"]


def render(agg: dict[str, Any], fmt: str = "md") -> str:
    """The sweep as Markdown or LaTeX (the main table, then exact match per question type) or CSV (one
    wide table)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {list(FORMATS)}")
    if fmt == "csv":
        buffer = io.StringIO()
        header, body = table_rows(agg)
        csv.writer(buffer, lineterminator="\n").writerows([header, *body])
        return buffer.getvalue()
    write = _markdown if fmt == "md" else _latex
    main, types = write(*table_rows(agg, per_type=False)), write(*type_rows(agg))
    title = "Exact match per question type (%, mean ± std over seeds):"
    between = ["", title, ""] if fmt == "md" else ["", "% " + title]
    return "\n".join([*main, *between, *types]) + "\n"
