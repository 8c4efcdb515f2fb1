"""The predictions CSV: ``url, query, prediction, annotation``, one row per reference.

Rows of one sample share (``url``, ``query``) and repeat the prediction; a sample without
references is one row with an empty ``annotation``. The writer appends whole samples every
``flush_every`` and records the byte length after each complete flush in a side file, so
a crash in the middle of a write is cut off on resume and no sample is written twice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cora.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

COLUMNS = ("url", "query", "prediction", "annotation")


class PredictionsError(ValueError):
    """A predictions file that cannot be read: names the file, the row and the field."""


@dataclass(frozen=True)
class PredictionGroup:
    """One sample: its prediction and all its references."""

    url: str
    query: str
    prediction: str
    references: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> tuple[str, str]:
        return (self.url, self.query)


def group_rows(rows: Iterable[dict[str, str]], source: str = "<rows>") -> list[PredictionGroup]:
    """Group flat rows by (url, query) in first-seen order; predictions must agree within a group.

    ``rows`` are dicts with the four columns; row numbers in errors count the header as line 1.
    """
    order: list[tuple[str, str]] = []
    preds: dict[tuple[str, str], str] = {}
    refs: dict[tuple[str, str], list[str]] = {}
    for n, row in enumerate(rows, start=2):
        for col in COLUMNS:
            if row.get(col) is None:
                raise PredictionsError(f"{source}: row {n}: field {col!r} is missing")
        key = (row["url"], row["query"])
        if key not in preds:
            order.append(key)
            preds[key] = row["prediction"]
            refs[key] = []
        elif preds[key] != row["prediction"]:
            raise PredictionsError(
                f"{source}: row {n}: field 'prediction' differs from the earlier row of the same (url, query) "
                f"= {key!r}: one prediction per sample"
            )
        if row["annotation"] != "":
            refs[key].append(row["annotation"])
    return [PredictionGroup(k[0], k[1], preds[k], tuple(refs[k])) for k in order]


def read_predictions(path: str | os.PathLike[str]) -> list[PredictionGroup]:
    """Read a predictions CSV into groups (one per (url, query))."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PredictionsError(
                f"{path}: missing column(s) {missing}; a predictions CSV has columns {list(COLUMNS)}"
            )
        return group_rows(reader, source=str(path))


def format_rows(groups: Iterable[PredictionGroup], header: bool = False) -> str:
    """CSV text for ``groups`` (one row per reference)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    for g in groups:
        for ref in g.references or ("",):
            writer.writerow((g.url, g.query, g.prediction, ref))
    return buffer.getvalue()


def write_predictions(path: str | os.PathLike[str], groups: Iterable[PredictionGroup]) -> None:
    """Write a whole predictions file atomically."""
    atomic_write_text(path, format_rows(groups, header=True))


class PredictionWriter:
    """Append samples to a predictions CSV every ``flush_every``; resume without duplicates.

    Use as a context manager: pending samples are flushed on exit, also after an error
    (they are complete samples). ``done`` holds the (url, query) keys already in the file.
    """

    def __init__(self, path: str | os.PathLike[str], flush_every: int = 50, resume: bool = True) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.path = Path(path)
        self.progress_path = self.path.with_name(self.path.name + ".progress.json")
        self.flush_every = flush_every
        self._pending: list[PredictionGroup] = []
        self._pending_keys: set[tuple[str, str]] = set()
        self.done: set[tuple[str, str]] = set()
        if resume and self.path.exists():
            self._recover()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, format_rows((), header=True))
            self._record_progress()

    def _recover(self) -> None:
        size = self.path.stat().st_size
        if self.progress_path.is_file():
            good = int(json.loads(self.progress_path.read_text())["bytes"])
            if size < good:
                raise PredictionsError(
                    f"{self.path}: file is shorter ({size} B) than its last complete flush ({good} B, recorded in "
                    f"{self.progress_path.name}): it was modified; remove both files to start over"
                )
            if size > good:
                logger.warning("%s: dropping %d bytes of an interrupted write", self.path, size - good)
                with open(self.path, "r+b") as handle:
                    handle.truncate(good)
        groups = read_predictions(self.path)
        self.done = {g.key for g in groups}
        self._record_progress()
        logger.info("resuming %s: %d samples already predicted", self.path, len(self.done))

    def _record_progress(self) -> None:
        atomic_write_json(self.progress_path, {"bytes": self.path.stat().st_size, "samples": len(self.done)})

    def add(self, group: PredictionGroup) -> None:
        if group.key in self.done or group.key in self._pending_keys:
            raise PredictionsError(f"{self.path}: sample {group.key!r} is already predicted")
        self._pending.append(group)
        self._pending_keys.add(group.key)
        if len(self._pending) >= self.flush_every:
            self.flush()

    def add_many(self, groups: Sequence[PredictionGroup]) -> None:
        for g in groups:
            self.add(g)

    def flush(self) -> None:
        if not self._pending:
            return
        data = format_rows(self._pending).encode("utf-8")
        with open(self.path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.update(g.key for g in self._pending)
        self._pending.clear()
        self._pending_keys.clear()
        self._record_progress()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
