"""Held-out measures of one trained run, per test question: what a sweep aggregates and bootstraps.

For every test question: its SynthPano question type and seam flag (from the dataset's columns),
the greedy answer's exact match against the references (None for captions), and the teacher-forced
answer loss as a (sum over answer tokens, tokens) pair, so any subset's token-weighted loss can be
recomputed. The captioning metrics (and the evaluation's own subsets) come from
:func:`cora.evaluation.runner.evaluate`, which also writes the predictions.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from cora.config import CoraConfig
from cora.evaluation.answers import yaw_block
from cora.recipes.demo.heldout import answer_loss_sum
from cora.utils.io import atomic_write_text

QUESTIONS = "questions.jsonl"


def _key(image: str, query: str) -> tuple[str, str]:
    return (str(Path(image).resolve()), query)


@torch.no_grad()
def question_losses(model: Any, config: CoraConfig) -> dict[tuple[str, str], tuple[float, int]]:
    """``(image, query) → (sum of answer-token cross-entropies, answer tokens)`` on ``data.test`` (first
    reference of each question), one question at a time so each has its own numbers."""
    from cora.data.datamodule import build_datamodule

    cfg = config.model_copy(update={"data": config.data.model_copy(update={"val": config.data.test})}, deep=True)
    module = build_datamodule(cfg, model.tokenizer, cfg.training.stages[-1])
    was_training = model.training
    model.eval()
    blind = config.training.blind
    try:
        return {
            _key(record.image, record.query or ""): answer_loss_sum(
                model, Subset(module.val, [i]), module.collate, 1, blind
            )
            for i, (record, _refs) in enumerate(module.val.entries)
        }
    finally:
        model.train(was_training)


def summarise(questions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Token-weighted answer loss and exact match over every question, per type, and on the seam subsets."""

    def block(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
        tokens = sum(r["tokens"] for r in rows)
        matches = [r["exact_match"] for r in rows if r["exact_match"] is not None]
        return {
            "n": len(rows),
            "answer_loss": sum(r["loss_sum"] for r in rows) / tokens if tokens else None,
            "exact_match": sum(matches) / len(matches) if matches else None,
        }

    rows = list(questions)
    by_type: dict[str, list] = {}
    for r in rows:
        by_type.setdefault(r["type"] or "other", []).append(r)
    out = {"all": block(rows), "by_type": {t: block(v) for t, v in sorted(by_type.items())}}
    grounding = [r["yaw_error_deg"] for r in rows if r.get("grounding")]
    if grounding:  # a box answer's yaw error; a prediction with no box is counted, not given an error
        out["yaw_error_deg"] = yaw_block(grounding)
    for name, flag in (("seam", True), ("no_seam", False)):
        subset = [r for r in rows if r["seam"] is flag]
        if subset:
            out[name] = block(subset)
    return out


def _generator(model: Any, config: CoraConfig) -> Any:
    """The run's answer generator: an adapted VLM's own (its input mode and chat template), else CORA's."""
    if config.adapt is not None:
        from cora.adapt.generator import AdaptGenerator

        return AdaptGenerator.from_model(model, config)
    from cora.inference import PanoramaGenerator
    from cora.recipes.demo.evaluation import ZeroViews

    generator = PanoramaGenerator.from_model(model, config)
    if config.training.blind:
        generator.views = ZeroViews(generator.views)
    return generator


def measure_run(model: Any, config: CoraConfig, run_dir: Path) -> dict[str, Any]:
    """Predictions, captioning metrics and per-question measures of a trained run (into ``run_dir/eval``).

    An adapted VLM's teacher-forced loss goes through its own processor's batches, which this recipe does
    not rebuild per question: its answer loss is left out (None), the generation measures are all there.
    """
    from cora.evaluation.answers import score_question
    from cora.evaluation.runner import evaluate
    from cora.evaluation.samples import read_eval_samples

    if config.data.test is None:
        raise ValueError("data.test is not set: a sweep evaluates every run on the held-out test split")
    generator = _generator(model, config)
    samples = read_eval_samples(config.data.test, config.data.bad_row_policy, config.data.cache_dir)
    out_dir = run_dir / "eval"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a run's measures always come from its final weights, whole
    answers: dict[tuple[str, str], str] = {}

    def generate(batch: list) -> list[str]:
        texts = generator.generate([s.image for s in batch], [s.query for s in batch])
        answers.update({_key(s.image, s.query): t for s, t in zip(batch, texts)})
        return texts

    ev = config.evaluation
    metrics = evaluate(generate, samples, out_dir, batch_size=ev.batch_size, metrics=ev.metrics)
    losses = question_losses(model, config) if config.adapt is None else {}
    questions = []
    for s in samples:
        key = _key(s.image, s.query)
        score = score_question(s.url, s.query, answers[key], s.references, s.question_type, s.seam)
        loss_sum, tokens = losses.get(key, (0.0, 0))
        questions.append({**score.to_json(), "grounding": score.grounding, "loss_sum": loss_sum, "tokens": tokens})
    atomic_write_text(out_dir / QUESTIONS, "".join(json.dumps(q) + "\n" for q in questions))
    captioning = {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
    return {"measures": summarise(questions), "metrics": captioning, "questions": len(questions)}
