"""``evaluate``: predict every sample (resumable, flushed as it goes), then score."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cora.evaluation.answers import QuestionScore, answer_metrics, score_question
from cora.evaluation.metrics import DEFAULT_METRICS, check_metric_names, compute_metrics
from cora.evaluation.predictions import PredictionGroup, PredictionWriter, read_predictions
from cora.evaluation.samples import EvalSample
from cora.inference.protocols import BatchGenerator
from cora.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.csv"
METRICS_JSON = "metrics.json"
PER_QUESTION = "per_question.jsonl"


GenerateFn = Callable[[Sequence[EvalSample]], list[str]]


def as_generate_fn(generator: GenerateFn | BatchGenerator) -> GenerateFn:
    """A callable on samples, from either such a callable or a :class:`BatchGenerator` (``generate(images, queries)``).

    A generator is callable too (on one image and query): it is recognised by its ``generate`` first.
    """
    if isinstance(generator, BatchGenerator):
        gen = generator
        return lambda batch: gen.generate([s.image for s in batch], [s.query for s in batch])
    if callable(generator):
        return generator
    raise TypeError(f"expected a callable or an object with generate(images, queries), got {type(generator).__name__}")


def predict(
    generator: GenerateFn | BatchGenerator,
    samples: Sequence[EvalSample],
    predictions_path: str | os.PathLike[str],
    batch_size: int = 8,
    flush_every: int = 50,
    resume: bool = True,
) -> int:
    """Write predictions for the samples not yet in ``predictions_path``; returns how many were new."""
    fn = as_generate_fn(generator)
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise ValueError("samples repeat a (url, query) pair: group them first (cora.evaluation.samples.group_samples)")
    with PredictionWriter(predictions_path, flush_every=flush_every, resume=resume) as writer:
        todo = [s for s in samples if s.key not in writer.done]
        if len(todo) < len(samples):
            logger.info("resuming: %d of %d samples already predicted", len(samples) - len(todo), len(samples))
        start = time.perf_counter()
        # About ten progress lines per run, whatever its size: one per batch floods the log.
        report_every = max(batch_size, -(-len(todo) // 10))
        next_report = report_every
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            outputs = fn(batch)
            if len(outputs) != len(batch):
                raise RuntimeError(f"generator returned {len(outputs)} predictions for a batch of {len(batch)}")
            writer.add_many([PredictionGroup(s.url, s.query, str(p), s.references) for s, p in zip(batch, outputs)])
            done = min(i + batch_size, len(todo))
            if done >= next_report or done == len(todo):
                next_report += report_every
                rate = done / max(time.perf_counter() - start, 1e-9)
                logger.info("predicted %d/%d (%.2f samples/s)", done, len(todo), rate)
    return len(todo)


def evaluate(
    generator: GenerateFn | BatchGenerator,
    samples: Sequence[EvalSample],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    flush_every: int = 50,
    metrics: Sequence[str] = DEFAULT_METRICS,
    resume: bool = True,
    judge: Any | None = None,
) -> dict[str, Any]:
    """Predict (writing ``out_dir/predictions.csv`` incrementally), score, write ``metrics.json``
    and ``per_question.jsonl`` (see :func:`score_predictions`; the samples' question types and seam
    flags give the subsets).

    Re-running after an interruption continues where the file ends; no sample is predicted
    twice. ``judge`` (a :class:`cora.evaluation.judge.Judge`) adds an LLM-as-judge score.
    """
    check_metric_names(metrics)
    out = Path(out_dir)
    predictions_path = out / PREDICTIONS
    predict(generator, samples, predictions_path, batch_size=batch_size, flush_every=flush_every, resume=resume)
    return score_predictions(predictions_path, out, metrics=metrics, judge=judge, samples=samples)


def score_predictions(
    predictions_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    judge: Any | None = None,
    samples: Sequence[EvalSample] | None = None,
) -> dict[str, Any]:
    """Metrics (and the judge's score) of a predictions CSV, written to ``out_dir/metrics.json``.

    After the caption metrics come the answer metrics (:func:`cora.evaluation.answers.answer_metrics`):
    ``exact_match`` always, ``yaw_error_deg`` when references are boxes, and, from ``samples``
    (their question types and seam flags), ``by_type`` and ``seam``/``no_seam``; without samples
    there are no subsets. ``out_dir/per_question.jsonl`` gets one line per sample.
    """
    groups = read_predictions(predictions_path)
    result = compute_metrics(groups, metrics)
    scores = question_scores(groups, samples)
    result.update(answer_metrics(scores))
    failure: Exception | None = None
    if judge is not None:
        from cora.evaluation.judge import JudgeError, judge_predictions

        try:
            result.update(judge_predictions(judge, predictions_path))
        except JudgeError as exc:  # the metrics computed so far are still written, then the failure is raised
            failure = exc
            result["judge"] = None
            result.setdefault("unavailable", {})["judge"] = f"the judge failed: {exc}"
        if result["judge"] is None and failure is None:
            result.setdefault("unavailable", {})["judge"] = "no judge answer held a 0-10 grade"
    result["predictions"] = str(predictions_path)
    atomic_write_text(Path(out_dir) / PER_QUESTION, "".join(json.dumps(s.to_json()) + "\n" for s in scores))
    atomic_write_json(Path(out_dir) / METRICS_JSON, result)
    if failure is not None:
        raise failure
    return result


def question_scores(
    groups: Sequence[PredictionGroup], samples: Sequence[EvalSample] | None = None
) -> list[QuestionScore]:
    """Each predicted sample scored, in the predictions file's order; question type and seam flag from
    the sample of the same (url, query), when given."""
    by_key = {s.key: s for s in samples or ()}
    scores = []
    for g in groups:
        sample = by_key.get(g.key)
        kind, seam = (sample.question_type, sample.seam) if sample else (None, None)
        scores.append(score_question(g.url, g.query, g.prediction, g.references, kind, seam))
    return scores
