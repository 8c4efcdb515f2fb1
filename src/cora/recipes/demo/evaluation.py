"""The demo's held-out evaluation of one run: answer loss, answer accuracy, captioning metrics.

It joins training (the run loader), data, inference and evaluation, which only a recipe may do.
"""

from __future__ import annotations

import shutil
from typing import Any

import torch

from cora.config import CoraConfig


class ZeroViews:
    """The blind run's views: same geometry, every pixel zero (as in its training)."""

    def __init__(self, views: Any) -> None:
        self.views = views

    def __call__(self, images: Any) -> Any:
        batch = self.views(images)
        batch.pixels = torch.zeros_like(batch.pixels)
        return batch


def heldout_loss(model: Any, config: CoraConfig) -> tuple[float, dict[str, float]]:
    """Teacher-forced cross-entropy per answer token on ``data.test`` (first reference of each
    question): over every answer, and per SynthPano question type."""
    from cora.data.datamodule import build_datamodule
    from cora.data.synth import question_type
    from cora.recipes.demo.heldout import heldout_lm_loss_by_group

    # The test split read as the validation set (teacher-forced, the last stage's texts).
    cfg = config.model_copy(update={"data": config.data.model_copy(update={"val": config.data.test})}, deep=True)
    module = build_datamodule(cfg, model.tokenizer, cfg.training.stages[-1])
    groups: dict[str, list[int]] = {}
    for i, (record, _refs) in enumerate(module.val.entries):
        groups.setdefault(question_type(record.query), []).append(i)
    return heldout_lm_loss_by_group(
        model,
        module.val,
        module.collate,
        dict(sorted(groups.items())),
        batch_size=config.evaluation.batch_size,
        blind=config.training.blind,
    )


def _by_type(loss_by_type: dict[str, float], samples: list, answers: dict[tuple[str, str], str]) -> dict[str, dict]:
    """Per SynthPano question type: held-out loss, questions, exact-match accuracy (none for captions)."""
    from cora.data.synth import question_type
    from cora.evaluation.answers import answer_accuracy

    pairs_by_type: dict[str, list[tuple[str, list[str]]]] = {}
    for s in samples:
        pairs_by_type.setdefault(question_type(s.query), []).append((answers[s.key], s.references))
    by_type = {}
    for kind, value in loss_by_type.items():
        pairs = pairs_by_type.get(kind, [])
        by_type[kind] = {
            "loss": value,
            "questions": len(pairs),
            "accuracy": answer_accuracy(pairs) if pairs and kind != "caption" else None,
        }
    return by_type


def evaluate_run(config: CoraConfig, upto: str | None = None) -> dict[str, Any]:
    """Predictions + metrics (evaluation API) and the demo's numbers for one run: its final model, or with
    ``upto`` the model as it was after that stage (into ``<run>/eval-<upto>``)."""
    from cora.data.records import CAPTION_QUERY
    from cora.evaluation.answers import answer_accuracy
    from cora.evaluation.runner import METRICS_JSON, PREDICTIONS, evaluate
    from cora.evaluation.samples import read_eval_samples
    from cora.inference import PanoramaGenerator
    from cora.inference.loading import load_run
    from cora.training.runner import load_run_model, run_dir_of

    if config.data.test is None:
        raise ValueError("data.test is not set: the demo evaluates on the held-out test split")
    if upto is None:
        # The run's exported model (<run>/model), else rebuilt from its stage checkpoints.
        model, _ = load_run(run_dir_of(config), config=config, device="cpu", run_loader=load_run_model)
    else:
        stages = list(config.training.stages)
        earlier = config.training.model_copy(update={"stages": stages[: stages.index(upto) + 1]})
        model = load_run_model(config.model_copy(update={"training": earlier}), run_dir_of(config))
    generator = PanoramaGenerator.from_model(model, config)
    if config.training.blind:
        generator.views = ZeroViews(generator.views)
    samples = read_eval_samples(config.data.test, config.data.bad_row_policy, config.data.cache_dir)
    out_dir = run_dir_of(config) / ("eval" if upto is None else f"eval-{upto}")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    answers: dict[tuple[str, str], str] = {}

    def generate(batch: list) -> list[str]:
        texts = generator.generate([s.image for s in batch], [s.query for s in batch])
        answers.update({s.key: t for s, t in zip(batch, texts)})
        return texts

    metrics = evaluate(
        generate, samples, out_dir, batch_size=config.evaluation.batch_size, metrics=config.evaluation.metrics
    )
    qa = [(answers[s.key], s.references) for s in samples if s.query != CAPTION_QUERY]
    loss, loss_by_type = heldout_loss(model, config)
    by_type = _by_type(loss_by_type, samples, answers)
    return {
        "heldout_loss": loss,
        "answer_accuracy": answer_accuracy(qa),
        "seam_accuracy": (metrics.get("seam") or {}).get("exact_match"),
        "qa_samples": len(qa),
        "by_type": by_type,
        "samples": len(samples),
        "metrics": metrics,
        "predictions": str(out_dir / PREDICTIONS),
        "metrics_json": str(out_dir / METRICS_JSON),
    }
