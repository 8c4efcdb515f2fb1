"""Training data for adapted VLMs: the project's datasets and views, text through the family's processor.

Each item is the data contract's (views ``[V, 3, H, W]``, geometries, ``meta`` with query and answers); the
collator renders query + answer with the family's chat template and runs its processor, which expands
the image placeholders for the attached views, and masks everything but the assistant answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from cora.adapt.encode import IGNORE, encode_batch
from cora.adapt.families.base import VLMFamily
from cora.adapt.inputs import PanoramaInputs, panorama_from_pixels
from cora.config.schema import CoraConfig
from cora.config.sections.training import StageConfig
from cora.data.datamodule import stage_train_records
from cora.data.dataset import PanoramaDataset, kept_items, read_bad_rows, skipped_rows
from cora.data.readers import read_records
from cora.data.records import BadRowLog, DataError
from cora.training.module import StageData

logger = logging.getLogger(__name__)


class AdaptCollator:
    """Items → the batch contract, with ``input_ids``/``attention_mask``/``labels`` from the family's processor."""

    def __init__(
        self, family: VLMFamily, processor: Any, system_prompt: str | None = None, max_length: int | None = None
    ) -> None:
        self.family, self.processor = family, processor
        self.system_prompt, self.max_length = system_prompt, max_length

    def __call__(self, items: Sequence[Any]) -> dict[str, Any]:
        kept, skipped = kept_items(items), skipped_rows(items)
        if not kept:
            return {"skipped": skipped}
        geometries = kept[0]["geometries"]
        missing = [
            item["meta"]["source"] for item in kept if not item["meta"]["query"] or not item["meta"]["references"]
        ]
        if missing:
            raise DataError(f"{missing[0]}: an adapted VLM trains on question + answer rows (query/annotation missing)")
        panos = [panorama_from_pixels(item["pixel_values"], geometries) for item in kept]
        encoded = encode_batch(
            self.family,
            self.processor,
            panos,
            [item["meta"]["query"] for item in kept],
            [item["meta"]["references"][0] for item in kept],
            self.system_prompt,
            self.max_length,
        )
        inputs = encoded.inputs
        for row, item in enumerate(kept):
            if not bool((inputs["labels"][row] != IGNORE).any()):
                raise DataError(
                    f"{item['meta']['source']}: no answer token is labelled (the answer starts after "
                    f"adapt.max_length={self.max_length}, or the chat template lost the assistant turn)"
                )
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in kept]),
            "geometries": geometries,
            "meta": [item["meta"] for item in kept],
            "skipped": skipped,
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "labels": inputs["labels"],
        }


def build_adapt_stage_data(
    config: CoraConfig, stage: str, stage_cfg: StageConfig, family: VLMFamily, processor: Any
) -> StageData:
    """``data.train`` (and ``data.val``) as :class:`StageData` for the stage runner."""
    cfg, data = config.adapt, config.data
    if data.train is None:
        raise DataError(f"stage {stage!r} needs a training file: set data.train")
    inputs = PanoramaInputs(cfg.input_mode, config.image_processing, native_height=cfg.native_height)

    def dataset(path: str | None, train: bool = False) -> PanoramaDataset | None:
        if path is None:
            return None
        log = BadRowLog(data.bad_row_policy)
        records, _ = read_records(path, log=log, jsonl_tasks=data.jsonl_tasks)
        if train:
            records = stage_train_records(stage_cfg, config.experiment.seed, records, log)
        # No formatter: text is encoded per batch by the family's processor (it needs the images).
        return PanoramaDataset(records, inputs.view_batch, None, cache_dir=data.cache_dir, log=log)

    collate = AdaptCollator(family, processor, cfg.system_prompt or data.system_prompt, cfg.max_length)
    train, val = dataset(data.train, train=True), dataset(data.val)
    return StageData(train, val, collate, read_bad_rows=read_bad_rows(train, val))
