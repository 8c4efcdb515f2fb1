"""Feedback on served answers (a JSONL file) as training data: corrections for SFT, ratings for ``rl``.

One JSON object per line::

    {"image": "images/ab12….png", "query": "What is behind you?", "answer": "the red cube",
     "rating": -1, "correction": "nothing"}

``image`` (relative paths are relative to the file), ``query`` and ``answer`` (what the model said)
are required, and at least one of ``rating`` (-1 or +1) and ``correction``. Every row of it becomes:

* for an ``sft`` stage, a row with a correction trains on (image, query, correction);
* for an ``rl`` stage, every row is a prompt whose sampled answers the ``feedback`` reward scores:
  1 for the correction or a +1-rated answer, 0 for a -1-rated one (see :mod:`cora.rewards.verifiable`).

A row that breaks these rules is a bad row naming the file, line and field (counted, or an error
under ``data.bad_row_policy: error``), like any dataset row.
"""

from __future__ import annotations

import json
from pathlib import Path

from cora.data.readers import _BadRow, _ImageChecks, resolve_image
from cora.data.records import BadRowLog, DataError, Record, undecodable_byte
from cora.processors.feedback import FieldError, check_feedback

FEEDBACK_TYPE = "feedback"  # the question type of every feedback row (its reward: rl.rewards.feedback)


def _record(row: object, path: Path, line: int, kind: str, checks: _ImageChecks) -> Record | None:
    if not isinstance(row, dict):
        raise _BadRow(f"expected a JSON object, got {type(row).__name__}")
    image = row.get("image")
    if not isinstance(image, str) or not image.strip():
        raise _BadRow(f"field 'image': expected a non-empty string, got {image!r}")
    try:
        fields = check_feedback(row)
    except FieldError as exc:
        raise _BadRow(str(exc)) from None
    query, answer = fields["query"], fields["answer"]
    rating, correction = fields.get("rating"), fields.get("correction")
    ref = resolve_image(image.strip(), path.parent)
    problem = checks(ref)
    if problem:
        raise _BadRow(f"field 'image': {problem}")
    if kind == "sft":
        if correction is None:
            return None  # a rating alone teaches likelihood training nothing
        return Record((ref,), query, correction, str(path), line, question_type=FEEDBACK_TYPE)
    good = [a for a in (correction, answer if rating == 1 else None) if a]
    rejected = (answer,) if rating == -1 and answer != correction else ()
    # The record's answer is the good one when known; else the rejected one (then only its prompt counts:
    # the feedback reward never takes a rejected answer for a reference).
    answer_text = good[0] if good else answer
    return Record((ref,), query, answer_text, str(path), line, question_type=FEEDBACK_TYPE, rejected=rejected)


def read_feedback(path: str | Path, kind: str, log: BadRowLog) -> list[Record]:
    """The feedback rows of ``path`` as records for a stage of ``kind`` (``sft`` or ``rl``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: feedback file not found")
    records: list[Record] = []
    checks = _ImageChecks()
    with path.open(encoding="utf-8", errors="surrogateescape") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            byte = undecodable_byte(text)
            if byte is not None:
                log.report(str(path), line, f"not UTF-8 (byte 0x{byte:02x})")
                continue
            try:
                row = json.loads(text)
                record = _record(row, path, line, kind, checks)
            except json.JSONDecodeError as exc:
                log.report(str(path), line, f"not JSON ({exc.msg} at column {exc.colno})")
                continue
            except _BadRow as exc:
                log.report(str(path), line, str(exc))
                continue
            if record is not None:
                records.append(record)
    if not records:
        raise DataError(f"{path}: no feedback rows a {kind} stage can train on ({len(log.rows)} bad rows)")
    return records
