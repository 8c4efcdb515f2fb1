"""The demo's held-out evaluation of one run: answer loss, answer accuracy, captioning metrics.

(A plain module, not a ``*_cmd``: the CLI is the layer allowed to join training, data,
inference and evaluation.)
"""

from __future__ import annotations

import shutil
from typing import Any

import torch

from cora.config import CoraConfig


def load_trained(config: CoraConfig) -> Any:
    """The run's exported model (``<run>/model``), else rebuilt from its stage checkpoints."""
    from cora.training.runner import load_run_model, run_dir_of

    exported = run_dir_of(config) / "model"
    if (exported / "trainable.safetensors").is_file():
        from cora.model import load_model

        return load_model(exported).eval()
    return load_run_model(config)


class _ZeroViews:
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
    from torch.utils.data import Subset

    from cora.data.datamodule import build_datamodule
    from cora.data.synth import question_type
    from cora.training.heldout import heldout_lm_loss

    cfg = config.model_copy(deep=True)
    cfg.data.val = config.data.test
    module = build_datamodule(cfg, model.tokenizer, cfg.training.stages[-1])

    def loss(dataset: Any) -> float:
        return heldout_lm_loss(model, dataset, module.collate, batch_size=config.evaluation.batch_size,
                               blind=config.training.blind)

    groups: dict[str, list[int]] = {}
    for i, (record, _refs) in enumerate(module.val.entries):
        groups.setdefault(question_type(record.query), []).append(i)
    return loss(module.val), {kind: loss(Subset(module.val, idx)) for kind, idx in sorted(groups.items())}


def evaluate_run(config: CoraConfig) -> dict[str, Any]:
    """Predictions + metrics (evaluation API) and the demo's two numbers for one run."""
    from cora.data.records import CAPTION_QUERY
    from cora.data.synth import question_type
    from cora.evaluation.runner import METRICS_JSON, PREDICTIONS, evaluate
    from cora.evaluation.samples import read_eval_samples
    from cora.inference import PanoramaGenerator
    from cora.training.heldout import answer_accuracy
    from cora.training.runner import run_dir_of

    if config.data.test is None:
        raise ValueError("data.test is not set: the demo evaluates on the held-out test split")
    model = load_trained(config)
    generator = PanoramaGenerator.from_model(model, config)
    if config.training.blind:
        generator.views = _ZeroViews(generator.views)
    samples = read_eval_samples(config.data.test, config.data.bad_row_policy, config.data.cache_dir)
    out_dir = run_dir_of(config) / "eval"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    answers: dict[tuple[str, str], str] = {}

    def generate(batch: list) -> list[str]:
        texts = generator.generate([s.image for s in batch], [s.query for s in batch])
        answers.update({s.key: t for s, t in zip(batch, texts)})
        return texts

    metrics = evaluate(generate, samples, out_dir, batch_size=config.evaluation.batch_size,
                       metrics=config.evaluation.metrics)
    qa = [(answers[s.key], s.references) for s in samples if s.query != CAPTION_QUERY]
    with torch.no_grad():
        loss, loss_by_type = heldout_loss(model, config)
    by_type: dict[str, dict[str, Any]] = {kind: {"loss": value} for kind, value in loss_by_type.items()}
    for kind in by_type:
        pairs = [(answers[s.key], s.references) for s in samples if question_type(s.query) == kind]
        by_type[kind]["questions"] = len(pairs)
        by_type[kind]["accuracy"] = answer_accuracy(pairs) if kind != "caption" and pairs else None
    return {"heldout_loss": loss, "answer_accuracy": answer_accuracy(qa), "qa_samples": len(qa), "by_type": by_type,
            "samples": len(samples), "metrics": metrics, "predictions": str(out_dir / PREDICTIONS),
            "metrics_json": str(out_dir / METRICS_JSON)}
