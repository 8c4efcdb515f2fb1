"""Dataset files (CSV/JSONL) -> :class:`Record` lists, with every bad row accounted for.

CSV columns: ``url`` | ``image`` (a path relative to the CSV, or an http(s) URL),
``query`` | ``instruction``, ``annotation`` | ``response``, and optionally ``type`` (the question
type) and ``seam`` (whether the question needs the ±180° seam); an image-only CSV (stage 1) needs
only the image column. JSONL: see :mod:`cora.data.jsonl`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cora.data.fetch import image_size, is_url
from cora.data.jsonl import JSONL_TASKS, read_jsonl
from cora.data.records import BadRowLog, BadRowPolicy, DataError, Record, parse_flag, undecodable_byte

logger = logging.getLogger(__name__)

IMAGE_COLUMNS = ("url", "image")
QUERY_COLUMNS = ("query", "instruction")
ANSWER_COLUMNS = ("annotation", "response")
TYPE_COLUMNS = ("type",)
SEAM_COLUMNS = ("seam",)


def resolve_image(ref: str, base_dir: Path) -> str:
    """An absolute path (relative refs are relative to the dataset file) or the URL itself."""
    ref = ref.strip()
    if is_url(ref):
        return ref
    path = Path(ref).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def check_image_ref(ref: str) -> str | None:
    """Why a resolved image reference is unusable (None when fine): a missing file, or one whose
    header is not an image. URLs are checked when fetched; truncated pixel data when decoded."""
    if is_url(ref):
        return None
    if not Path(ref).is_file():
        return f"image not found: {ref}"
    try:
        image_size(ref)
    except DataError as exc:
        cause = exc.__cause__
        return f"unreadable image: {ref} ({type(cause).__name__ if cause else 'bad header'})"
    return None


class _ImageChecks:
    """:func:`check_image_ref` once per distinct image of one file (rows often share images)."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}

    def __call__(self, ref: str) -> str | None:
        if ref not in self.seen:
            self.seen[ref] = check_image_ref(ref)
        return self.seen[ref]


def _pick(header: list[str], names: Sequence[str]) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


class _BadRow(Exception):
    """A row problem; the message is the reason reported for the row."""


@dataclass(frozen=True)
class _Columns:
    image: int
    query: int | None
    answer: int | None
    type: int | None
    seam: int | None


def _columns(path: Path, header: list[str], image_only: bool) -> _Columns:
    image, query, answer = (_pick(header, names) for names in (IMAGE_COLUMNS, QUERY_COLUMNS, ANSWER_COLUMNS))
    needed = [("url' or 'image", image)] + (
        [] if image_only else [("query' or 'instruction", query), ("annotation' or 'response", answer)]
    )
    missing = [name for name, col in needed if col is None]
    if missing or image is None:
        raise DataError(
            f"{path}: missing column(s) " + ", ".join(f"'{m}'" for m in missing) + f"; the header has {header}"
        )
    return _Columns(image, query, answer, _pick(header, TYPE_COLUMNS), _pick(header, SEAM_COLUMNS))


def _text_fields(row: list[str], header: list[str], cols: _Columns) -> tuple[str, str, str | None, bool | None]:
    """(query, answer, question type, seam) of a text row; raises :class:`_BadRow`."""
    query, answer = row[cols.query].strip(), row[cols.answer].strip()
    if not query:
        raise _BadRow(f"empty {header[cols.query]}")
    if not answer:
        raise _BadRow(f"empty {header[cols.answer]}")
    kind = (row[cols.type].strip() or None) if cols.type is not None else None
    seam = None
    if cols.seam is not None:
        try:
            seam = parse_flag(row[cols.seam])
        except ValueError as exc:
            raise _BadRow(f"bad {header[cols.seam]}: {exc}") from None
    return query, answer, kind, seam


def _csv_record(
    row: list[str], header: list[str], cols: _Columns, image_only: bool, base: Path, check: _ImageChecks
) -> tuple[str, str | None, str | None, str | None, bool | None]:
    """(image ref, query, answer, question type, seam) of one CSV row; raises :class:`_BadRow`."""
    for name, cell in zip(header, row):
        if (byte := undecodable_byte(cell)) is not None:
            raise _BadRow(f"not UTF-8 text in column {name!r} (byte {byte:#04x})")
    if len(row) != len(header):
        raise _BadRow(f"malformed row: {len(row)} fields, the header has {len(header)}")
    image = row[cols.image].strip()
    if not image:
        raise _BadRow(f"empty {header[cols.image]}")
    fields = (None, None, None, None) if image_only else _text_fields(row, header, cols)
    ref = resolve_image(image, base)
    problem = check(ref)
    if problem:
        raise _BadRow(problem)
    return (ref, *fields)


def read_csv(path: str | Path, log: BadRowLog, image_only: bool = False) -> list[Record]:
    """Records of a CSV file. A missing required column is a :class:`DataError` for the whole file.

    The optional columns ``type`` (question type) and ``seam`` (``1/0/true/false/yes/no``, empty
    for unknown) fill :attr:`Record.question_type` and :attr:`Record.seam`; any other seam value
    makes the row bad.
    """
    path = Path(path)
    records: list[Record] = []
    check = _ImageChecks()
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file (expected a header row)") from None
        if any(undecodable_byte(h) is not None for h in header):
            raise DataError(f"{path}:1: the header row is not UTF-8 text")
        cols = _columns(path, header, image_only)
        line = reader.line_num + 1
        for row in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank line
            try:
                ref, query, answer, kind, seam = _csv_record(row, header, cols, image_only, path.parent, check)
            except _BadRow as bad:
                log.report(str(path), start, str(bad))
                continue
            records.append(Record((ref,), query, answer, str(path), start, question_type=kind, seam=seam))
    return records


def read_records(
    path: str | Path,
    policy: BadRowPolicy = "error",
    image_only: bool = False,
    jsonl_tasks: Sequence[str] = JSONL_TASKS,
    log: BadRowLog | None = None,
) -> tuple[list[Record], BadRowLog]:
    """Read a ``.csv`` or ``.jsonl`` dataset. Returns the good records and the bad-row log.

    ``image_only``: one record per distinct image (stage 1), text columns not required.
    """
    path = Path(path)
    log = log or BadRowLog(policy)
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            records = read_csv(path, log, image_only)
        elif suffix in (".jsonl", ".ndjson"):
            records = read_jsonl(path, log, image_only, jsonl_tasks, resolve_image, _ImageChecks())
        else:
            raise DataError(f"{path}: unknown dataset format {suffix!r} (expected .csv or .jsonl)")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from exc
    if image_only:
        records = _unique_images(records)
    if not records:
        raise DataError(f"{path}: no usable rows" + (f" ({len(log.rows)} bad)" if log.rows else ""))
    logger.info("%s: %d records, %d bad rows skipped", path, len(records), len(log.rows))
    return records, log


def _unique_images(records: list[Record]) -> list[Record]:
    seen: set[str] = set()
    out = []
    for rec in records:
        for image in rec.images:
            if image not in seen:
                seen.add(image)
                out.append(Record((image,), None, None, rec.source, rec.line, width=rec.width, height=rec.height))
    return out
