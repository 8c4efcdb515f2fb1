"""The torch Dataset: records -> views + tokenised chat text; and the batch collate.

An item is ``{"pixel_values": [V, 3, S, S] float in [0, 1], "geometries": list[ViewGeometry],
"input_ids": [T] long, "labels": [T] long (-100 outside the answer), "meta": dict}``; image-only
items (stage 1) have no ``input_ids``/``labels``. Views and text formatting are injected
(``views(path) -> ViewBatch``, e.g. ``PanoramaViews``; ``formatter.encode_train(query, answer)``,
e.g. ``ChatFormatter``) so the dataset works with any crop strategy and any chat template.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from cora.data.fetch import local_path
from cora.data.records import BadRow, BadRowLog, BadRowPolicy, DataError, Record
from cora.processors.image_io import ImageError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class ViewBatchLike(Protocol):
    pixels: torch.Tensor  # [V, 3, S, S]
    geometries: list


class TrainFormatter(Protocol):
    def encode_train(self, query: str, answer: str) -> dict[str, list[int]]: ...


# ``cora.processors.views.PanoramaViews``: a path or an array in, views out.
ViewsFn = Callable[[Any], ViewBatchLike]


def group_references(records: Sequence[Record]) -> list[tuple[Record, list[str]]]:
    """One entry per (images, query), in first-seen order, with every answer as a reference."""
    groups: dict[tuple, tuple[Record, list[str]]] = {}
    for rec in records:
        key = (rec.images, rec.query)
        if key not in groups:
            groups[key] = (rec, [])
        if rec.answer is not None:
            groups[key][1].append(rec.answer)
    return list(groups.values())


class PanoramaDataset(Dataset):
    """Panorama records as model inputs.

    ``formatter=None`` gives image-only items (stage 1). ``group_refs=True`` (evaluation)
    merges rows with the same image and query into one item whose ``meta["references"]``
    holds every answer. Text is tokenised up front, so a text that does not fit
    ``max_length`` with at least one answer token is a bad row reported at construction.
    An image that cannot be decoded when the item is loaded is an error naming the row
    (policy ``error``) or a logged skip: the item is ``None`` and :class:`Collator` drops it.
    ``view_cache`` > 0 keeps the views of that many panoramas in memory (per loader process).
    """

    def __init__(
        self,
        records: Sequence[Record],
        views: ViewsFn,
        formatter: TrainFormatter | None = None,
        max_length: int = 512,
        cache_dir: str = ".cora/cache",
        policy: BadRowPolicy = "error",
        group_refs: bool = False,
        log: BadRowLog | None = None,
        view_cache: int = 0,
    ) -> None:
        self.views = views
        # LRU of decoded views per image: a panorama with ten QA rows is decoded once, not ten times.
        self.view_cache = view_cache
        self._cache: OrderedDict[str, ViewBatchLike] = OrderedDict()
        self.cache_dir = cache_dir
        self.log = log or BadRowLog(policy)
        self.image_only = formatter is None
        entries = group_references(records) if group_refs else [(r, [r.answer] if r.answer else []) for r in records]
        self.entries: list[tuple[Record, list[str]]] = []
        self.texts: list[dict[str, list[int]] | None] = []
        for rec, refs in entries:
            text = None
            if formatter is not None:
                text = self._encode(formatter, rec, refs, max_length)
                if text is None:
                    continue
            self.entries.append((rec, refs))
            self.texts.append(text)
        multi = sum(len(rec.images) > 1 for rec, _ in self.entries)
        if multi:
            logger.warning("%d records have several images; the model reads one panorama per sample: the first", multi)

    def _encode(
        self, formatter: TrainFormatter, rec: Record, refs: list[str], max_length: int
    ) -> dict[str, list[int]] | None:
        if rec.query is None or not refs:
            self.log.report(rec.source, rec.line, "no query/answer for a text dataset")
            return None
        enc = formatter.encode_train(rec.query, refs[0])
        ids, labels = enc["input_ids"][:max_length], enc["labels"][:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            self.log.report(
                rec.source,
                rec.line,
                f"text too long: {len(enc['input_ids'])} tokens, the answer "
                f"starts after data.max_text_length={max_length}",
            )
            return None
        return {"input_ids": ids, "labels": labels}

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedItem:
        rec, refs = self.entries[index]
        batch = self._cache.get(rec.image)
        if batch is None:
            try:
                batch = self.views(str(local_path(rec.image, self.cache_dir)))
            except (DataError, ImageError) as exc:
                if self.log.policy == "error":
                    raise DataError(f"{rec.where}: {exc}") from exc
                logger.warning("skipped sample %s: %s", rec.where, exc)
                return SkippedItem(BadRow(rec.source, rec.line, f"unreadable image: {exc}"))
            if self.view_cache:
                self._cache[rec.image] = batch
                if len(self._cache) > self.view_cache:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(rec.image)
        item: dict[str, Any] = {
            "pixel_values": batch.pixels,
            "geometries": list(batch.geometries),
            "meta": {
                "image": rec.image,
                "query": rec.query,
                "references": list(refs),
                "source": rec.where,
                "type": rec.question_type,
                "seam": rec.seam,
                "rejected": list(rec.rejected),
            },
        }
        text = self.texts[index]
        if text is not None:
            item["input_ids"] = torch.tensor(text["input_ids"], dtype=torch.long)
            item["labels"] = torch.tensor(text["labels"], dtype=torch.long)
        return item


@dataclass(frozen=True)
class SkippedItem:
    """What a dataset returns for a row it skips (``bad_row_policy: skip``) when its image does not decode:
    the bad row travels with the batch (also out of loader workers) so the trainer counts it."""

    bad_row: BadRow


def read_bad_rows(*datasets: PanoramaDataset | None) -> tuple[BadRow, ...]:
    """The rows the datasets refused so far (while their files were read), in file order."""
    return tuple(row for ds in datasets if ds is not None for row in ds.log.rows)


def skipped_rows(items: Sequence[Any]) -> list[BadRow]:
    """The bad rows of the items a batch drops."""
    return [item.bad_row for item in items if isinstance(item, SkippedItem)]


def is_empty(batch: dict[str, Any] | None) -> bool:
    """A batch with no sample left (every image of it skipped): it carries only ``skipped``."""
    return batch is None or "pixel_values" not in batch


def kept_items(items: Sequence[Any]) -> list[dict[str, Any]]:
    """The items a batch keeps: skipped ones (:class:`SkippedItem`, or ``None``) dropped.

    Every kept item must share the first one's view geometries (one views config per batch).
    """
    kept = [item for item in items if isinstance(item, dict)]
    if len(kept) < len(items):
        logger.warning("batch: %d of %d samples skipped (unreadable images)", len(items) - len(kept), len(items))
    if any(item["geometries"] != kept[0]["geometries"] for item in kept[1:]):
        raise ValueError("samples of one batch have different view geometries (one views config per batch)")
    return kept


class Collator:
    """Items -> the batch contract (right padding with the tokenizer's pad id). Picklable for workers.

    Returns ``pixel_values [B, V, 3, S, S]``, ``geometries`` (one list for the batch),
    ``input_ids``/``attention_mask``/``labels [B, T]`` for text items, and ``meta``.
    Skipped items are dropped and their bad rows listed under ``skipped``; a batch with no sample left is
    ``{"skipped": [...]}`` alone (see :func:`is_empty`).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[Any]) -> dict[str, Any]:
        kept, skipped = kept_items(items), skipped_rows(items)
        if not kept:
            return {"skipped": skipped}
        geometries = kept[0]["geometries"]
        batch: dict[str, Any] = {
            "pixel_values": torch.stack([item["pixel_values"] for item in kept]),
            "geometries": geometries,
            "meta": [item["meta"] for item in kept],
            "skipped": skipped,
        }
        if "input_ids" in kept[0]:
            length = max(len(item["input_ids"]) for item in kept)
            ids = torch.full((len(kept), length), self.pad_id, dtype=torch.long)
            labels = torch.full((len(kept), length), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(kept), length), dtype=torch.long)
            for row, item in enumerate(kept):
                n = len(item["input_ids"])
                ids[row, :n] = item["input_ids"]
                labels[row, :n] = item["labels"]
                mask[row, :n] = 1
            batch.update(input_ids=ids, attention_mask=mask, labels=labels)
        return batch
