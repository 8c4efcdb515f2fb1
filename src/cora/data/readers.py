"""Dataset files (CSV/JSONL) -> :class:`Record` lists, with every bad row accounted for.

CSV columns: ``url`` | ``image`` (a path relative to the CSV, or an http(s) URL),
``query`` | ``instruction``, ``annotation`` | ``response``; an image-only CSV (stage 1)
needs only the image column. JSONL: see :mod:`cora.data.jsonl`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

from cora.data.fetch import image_size, is_url
from cora.data.jsonl import JSONL_TASKS, read_jsonl
from cora.data.records import BadRowLog, BadRowPolicy, DataError, Record

logger = logging.getLogger(__name__)

IMAGE_COLUMNS = ("url", "image")
QUERY_COLUMNS = ("query", "instruction")
ANSWER_COLUMNS = ("annotation", "response")


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


def read_csv(path: str | Path, log: BadRowLog, image_only: bool = False) -> list[Record]:
    """Records of a CSV file. A missing required column is a :class:`DataError` for the whole file."""
    path = Path(path)
    records: list[Record] = []
    check = _ImageChecks()
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file (expected a header row)") from None
        img_col = _pick(header, IMAGE_COLUMNS)
        q_col, a_col = _pick(header, QUERY_COLUMNS), _pick(header, ANSWER_COLUMNS)
        needed = [("url' or 'image", img_col)] + (
            [] if image_only else [("query' or 'instruction", q_col), ("annotation' or 'response", a_col)]
        )
        missing = [name for name, col in needed if col is None]
        if missing:
            raise DataError(
                f"{path}: missing column(s) " + ", ".join(f"'{m}'" for m in missing) + f"; the header has {header}"
            )
        line = reader.line_num + 1
        for row in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) != len(header):
                log.report(str(path), start, f"malformed row: {len(row)} fields, the header has {len(header)}")
                continue
            image = row[img_col].strip()
            if not image:
                log.report(str(path), start, f"empty {header[img_col]}")
                continue
            query = answer = None
            if not image_only:
                query, answer = row[q_col].strip(), row[a_col].strip()
                if not query:
                    log.report(str(path), start, f"empty {header[q_col]}")
                    continue
                if not answer:
                    log.report(str(path), start, f"empty {header[a_col]}")
                    continue
            ref = resolve_image(image, path.parent)
            problem = check(ref)
            if problem:
                log.report(str(path), start, problem)
                continue
            records.append(Record((ref,), query, answer, str(path), start))
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
