"""Lightning DataModule over :class:`PanoramaDataset`, and ``build_datamodule(cfg, tokenizer, stage)``.

Shuffling is deterministic in the seed (a seeded ``torch.Generator``; Lightning's
distributed sampler takes the same seed under DDP) and every worker process seeds numpy
and ``random`` from it. Bad-row counts of every split are kept in ``bad_rows`` for the
run's summary.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from cora.config import CoraConfig
from cora.config.sections.training import StageConfig
from cora.data.dataset import Collator, PanoramaDataset, TrainFormatter, ViewsFn
from cora.data.readers import read_records
from cora.data.records import BadRowLog, DataError, Record
from cora.utils.machine import resolve_workers

logger = logging.getLogger(__name__)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a loader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class PanoramaDataModule(L.LightningDataModule):
    def __init__(
        self,
        train: PanoramaDataset | None,
        val: PanoramaDataset | None = None,
        test: PanoramaDataset | None = None,
        batch_size: int = 1,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.train, self.val, self.test = train, val, test
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.seed = seed
        self.collate = Collator(pad_id)

    @property
    def bad_rows(self) -> dict[str, dict]:
        """Per split: the bad-row summary (for logs and the run's summary)."""
        return {
            name: ds.log.summary()
            for name, ds in (("train", self.train), ("val", self.val), ("test", self.test))
            if ds is not None
        }

    def _loader(self, dataset: PanoramaDataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise DataError("no dataset configured for this split (set data.train / data.val / data.test)")
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            pin_memory=self.pin_memory,
            worker_init_fn=seed_worker,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.eval_batch_size, shuffle=False)


def _default_views(cfg: CoraConfig) -> ViewsFn:
    from cora.processors.views import PanoramaViews

    return PanoramaViews.from_config(cfg.image_processing)


def _default_formatter(cfg: CoraConfig, tokenizer: Any) -> TrainFormatter:
    from cora.processors.text import ChatFormatter

    return ChatFormatter(tokenizer, system_prompt=cfg.data.system_prompt, vision_token=cfg.models.vision_token)


def stage_train_records(stage_cfg: StageConfig, seed: int, records: list[Record], log: BadRowLog) -> list[Record]:
    """The rows a stage trains on: an rl stage leaves out the question types it cannot check (captions),
    and a feedback stage trains on its feedback file with ``replay`` of these rows mixed in."""
    if stage_cfg.kind == "rl" and stage_cfg.rl.exclude_types:
        excluded = set(stage_cfg.rl.exclude_types)
        records = [r for r in records if r.question_type not in excluded]
    if stage_cfg.feedback is not None:
        records = feedback_with_replay(stage_cfg, seed, records, log)
    return records


def feedback_with_replay(stage_cfg: StageConfig, seed: int, original: list[Record], log: BadRowLog) -> list[Record]:
    """A feedback stage's training rows: its feedback file's rows, plus ``replay`` (a share of the result)
    drawn from the original training rows (experience replay: what it learned before is not forgotten)."""
    from cora.data.feedback import read_feedback

    rows = read_feedback(stage_cfg.feedback, stage_cfg.kind, log)
    wanted = round(stage_cfg.replay / (1.0 - stage_cfg.replay) * len(rows))
    replay = random.Random(seed).sample(original, min(wanted, len(original)))
    logger.info("feedback stage: %d feedback rows + %d replayed training rows", len(rows), len(replay))
    return rows + replay


def build_datamodule(
    cfg: CoraConfig, tokenizer: Any, stage: str, views: ViewsFn | None = None, formatter: TrainFormatter | None = None
) -> PanoramaDataModule:
    """The DataModule of training stage ``stage`` (a key of ``training.stage_configs``).

    A stage whose language model is ``unused`` (stage 1) reads images only, from
    ``data.vision_train`` (default ``data.train``); the others read text from
    ``data.train`` / ``data.val``. Validation merges rows with the same image and query
    into one sample with every answer as a reference.
    """
    if stage not in cfg.training.stage_configs:
        raise DataError(f"unknown stage {stage!r}; configured stages: {sorted(cfg.training.stage_configs)}")
    stage_cfg = cfg.training.stage_configs[stage]
    data = cfg.data
    image_only = stage_cfg.language_model == "unused"
    views = views or _default_views(cfg)
    if not image_only:
        formatter = formatter or _default_formatter(cfg, tokenizer)

    def dataset(path: str | None, group_refs: bool, train: bool = False) -> PanoramaDataset | None:
        if path is None:
            return None
        log = BadRowLog(data.bad_row_policy)
        records, _ = read_records(path, image_only=image_only, jsonl_tasks=data.jsonl_tasks, log=log)
        if train:
            records = stage_train_records(stage_cfg, cfg.experiment.seed, records, log)
        return PanoramaDataset(
            records,
            views,
            None if image_only else formatter,
            max_length=data.max_text_length,
            cache_dir=data.cache_dir,
            group_refs=group_refs,
            log=log,
            view_cache=data.view_cache,
        )

    train_path = (data.vision_train or data.train) if image_only else data.train
    if train_path is None:
        raise DataError(
            f"stage {stage!r} needs a training file: set data.train" + (" or data.vision_train" if image_only else "")
        )
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(tokenizer, "eos_token_id", None) or 0
    # data.test belongs to evaluation: a training run does not read it.
    module = PanoramaDataModule(
        dataset(train_path, False, train=True),
        dataset(data.val, True),
        batch_size=stage_cfg.batch_size,
        num_workers=resolve_workers(data.num_workers),
        pin_memory=data.pin_memory,
        seed=cfg.experiment.seed,
        pad_id=pad_id,
    )
    for split, summary in module.bad_rows.items():
        if summary["bad_rows"]:
            logger.warning("data %s: %d bad rows skipped %s", split, summary["bad_rows"], summary["by_reason"])
    return module
