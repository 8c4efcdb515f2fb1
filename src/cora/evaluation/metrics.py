"""COCO caption metrics (pycocoevalcap): BLEU-4, METEOR, ROUGE-L, CIDEr, SPICE.

The standard COCO caption evaluation: every sample's references are grouped (one
"image" per (url, query)), captions go through the Stanford PTB tokenizer (Java), then
each scorer runs on the tokenized dicts. A metric that cannot run here is ``None`` in the
result with its reason under ``"unavailable"``; it is never reported as 0.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cora.evaluation.predictions import PredictionGroup, read_predictions

logger = logging.getLogger(__name__)

JAVA_HINT = "install a Java runtime (Debian/Ubuntu: apt-get install default-jre-headless)"


@dataclass(frozen=True)
class MetricSpec:
    """How to run one metric: a pycocoevalcap scorer, the index of our number in its output."""

    label: str
    make_scorer: Callable[[], Any]
    index: int | None = None
    needs: Callable[[], str | None] = lambda: None  # a reason it cannot run, else None
    # Start the scorer before tokenizing: METEOR's JVM spends ~10 s loading its paraphrase
    # table, which then overlaps with tokenization and the other scorers.
    early: bool = False


def _bleu() -> Any:
    from pycocoevalcap.bleu.bleu import Bleu

    return Bleu(4)


def _meteor() -> Any:
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _rouge() -> Any:
    from pycocoevalcap.rouge.rouge import Rouge

    return Rouge()


def _cider() -> Any:
    from pycocoevalcap.cider.cider import Cider

    return Cider()


def _spice() -> Any:
    from pycocoevalcap.spice.spice import Spice

    return Spice()


def spice_missing() -> str | None:
    """Why SPICE cannot run here, or None. Never triggers pycocoevalcap's download."""
    try:
        import pycocoevalcap.spice as spice_pkg
    except ImportError:
        return "pycocoevalcap is not installed (pip install pycocoevalcap)"
    lib = Path(spice_pkg.__file__).parent / "lib"
    jars = [lib / "stanford-corenlp-3.6.0.jar", lib / "stanford-corenlp-3.6.0-models.jar"]
    absent = [j.name for j in jars if not j.is_file()]
    if absent:
        return (
            f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(absent)} in {lib}); pycocoevalcap downloads it "
            "from nlp.stanford.edu on first use, and it is not installed here"
        )
    return None


METRICS: dict[str, MetricSpec] = {
    "bleu4": MetricSpec("BLEU-4", _bleu, index=3),
    "meteor": MetricSpec("METEOR", _meteor, early=True),
    "rouge_l": MetricSpec("ROUGE-L", _rouge),
    "cider": MetricSpec("CIDEr", _cider),
    "spice": MetricSpec("SPICE", _spice, needs=spice_missing),
}
DEFAULT_METRICS = tuple(METRICS)


def check_metric_names(names: Sequence[str]) -> list[str]:
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {sorted(METRICS)}")
    return list(names)


def _coco_dicts(
    groups: Sequence[PredictionGroup],
) -> tuple[dict[int, list[dict[str, str]]], dict[int, list[dict[str, str]]]]:
    gts = {i: [{"caption": r} for r in g.references] for i, g in enumerate(groups)}
    res = {i: [{"caption": g.prediction}] for i, g in enumerate(groups)}
    return gts, res


def _run_java_quietly(fn: Callable[[], Any]) -> Any:
    # pycocoevalcap prints progress (BLEU's ratios, "computing ..."); keep our stdout a table.
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def compute_metrics(
    source: str | os.PathLike[str] | Sequence[PredictionGroup], metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, Any]:
    """Metrics for a predictions CSV (or its groups).

    Returns ``{name: float | None, ..., "unavailable": {name: reason}, "n_samples",
    "n_references", "n_without_references", "seconds": {step: s}}``; samples without
    references are left out of the scores (and counted).
    """
    names = check_metric_names(metrics)
    groups = read_predictions(source) if isinstance(source, str | os.PathLike) else list(source)
    scored = [g for g in groups if g.references]
    result: dict[str, Any] = {n: None for n in names}
    unavailable: dict[str, str] = {}
    seconds: dict[str, float] = {}
    common = _common_blocker(scored)
    if common:
        unavailable.update({n: common for n in names})
    elif names:
        runnable = []
        for name in names:
            reason = METRICS[name].needs()
            if reason:
                unavailable[name] = reason
            else:
                runnable.append(name)
        scorers = {n: _make(n, unavailable) for n in runnable if METRICS[n].early}
        start = time.perf_counter()
        gts, res = _tokenize(scored)
        seconds["tokenize"] = time.perf_counter() - start
        # early (slow-starting) scorers last, so their start-up overlaps with the others
        for name in sorted(runnable, key=lambda n: METRICS[n].early):
            start = time.perf_counter()
            scorer = scorers[name] if name in scorers else _make(name, unavailable)
            score = _score(name, scorer, gts, res, unavailable)
            seconds[name] = time.perf_counter() - start
            if score is not None:
                result[name] = score
    if unavailable:
        result["unavailable"] = unavailable
    result["n_samples"] = len(scored)
    result["n_references"] = sum(len(g.references) for g in scored)
    result["n_without_references"] = len(groups) - len(scored)
    result["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return result


def _make(name: str, unavailable: dict[str, str]) -> Any:
    try:
        return METRICS[name].make_scorer()
    except Exception as exc:
        unavailable[name] = f"{METRICS[name].label} could not start: {type(exc).__name__}: {exc}"
        return None


def _score(name: str, scorer: Any, gts: dict, res: dict, unavailable: dict[str, str]) -> float | None:
    spec = METRICS[name]
    if scorer is None:
        return None
    try:
        score, _ = _run_java_quietly(lambda: scorer.compute_score(gts, res))
    except Exception as exc:  # a scorer that crashes is reported, never turned into a number
        logger.warning("%s failed: %s", spec.label, exc)
        unavailable[name] = f"{spec.label} failed: {type(exc).__name__}: {exc}"
        return None
    return float(score[spec.index] if spec.index is not None else score)


def _common_blocker(scored: Sequence[PredictionGroup]) -> str | None:
    """A reason no metric can run at all (no references, no pycocoevalcap, no Java)."""
    if not scored:
        return "no sample has a reference annotation"
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        return "pycocoevalcap is not installed (pip install pycocoevalcap, or pip install 'cora[eval]')"
    if shutil.which("java") is None:
        return f"java not found on PATH: the COCO PTB tokenizer and METEOR/SPICE need it; {JAVA_HINT}"
    return None


def _tokenize(groups: Sequence[PredictionGroup]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts, res = _coco_dicts(groups)
    tokenizer = PTBTokenizer()
    return _run_java_quietly(lambda: tokenizer.tokenize(gts)), _run_java_quietly(lambda: tokenizer.tokenize(res))


def format_metrics(result: dict[str, Any]) -> str:
    """A small plain-text table of one result (what ``cora eval`` prints)."""
    lines = [f"{'metric':<10} {'value':>10}"]
    for name, spec in METRICS.items():
        if name not in result:
            continue
        value = result[name]
        shown = f"{value:>10.4f}" if value is not None else f"{'n/a':>10}"
        lines.append(f"{spec.label:<10} {shown}")
    for name, reason in result.get("unavailable", {}).items():
        lines.append(f"  {name}: unavailable — {reason}")
    if "judge" in result and result["judge"] is not None:
        lines.append(f"{'judge':<10} {result['judge']:>10.4f}")
    lines.append(f"samples: {result.get('n_samples', 0)}, references: {result.get('n_references', 0)}")
    return "\n".join(lines)
