"""What a dataset row becomes (:class:`Record`) and how bad rows are accounted for.

Bad rows never vanish: each one is either an error (policy ``error``: stop with
``file:line: reason``) or logged and counted (policy ``skip``) in a :class:`BadRowLog`
whose summary goes to the logs and to the run's summary.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger(__name__)

BadRowPolicy = Literal["error", "skip"]
POLICIES = ("error", "skip")
# The query paired with a caption (SynthPano captions, JSONL summaries).
CAPTION_QUERY = "Describe the panorama."


class DataError(ValueError):
    """A dataset problem, with the file (and line) it comes from in the message."""


_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def parse_flag(value: object) -> bool | None:
    """A yes/no column (``seam``): ``1/0/true/false/yes/no`` in any case, a JSON boolean, or empty
    (``""`` or null) for unknown, which is None. Anything else is a ValueError saying what was found."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text == "":
        return None
    if text not in _FLAGS:
        raise ValueError(f"{value!r} is not one of 1/0/true/false/yes/no (empty: unknown)")
    return _FLAGS[text]


@dataclass(frozen=True)
class Record:
    """One training/evaluation example: panorama(s) + optional question and answer.

    ``images`` are absolute local paths or http(s) URLs. ``line`` is the 1-based line of
    the row in ``source`` (for CSV, the line where the row starts). ``question_type`` (e.g. a
    SynthPano template, ``caption``, ``grounding``) and ``seam`` (whether answering needs the ±180°
    seam) are None when the file does not say; evaluation reports subsets by them.
    """

    images: tuple[str, ...]
    query: str | None
    answer: str | None
    source: str
    line: int
    objects: tuple[dict, ...] = ()
    width: int | None = None
    height: int | None = None
    question_type: str | None = None
    seam: bool | None = None
    #: answers known to be wrong (feedback rated -1): the ``feedback`` reward scores them 0
    rejected: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return self.images[0]

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class BadRow:
    file: str
    line: int
    reason: str

    @property
    def kind(self) -> str:
        """The reason without its details (``"image not found"``), for counting."""
        return self.reason.split(":", 1)[0]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class BadRowLog:
    """Bad rows seen so far, under one policy."""

    policy: BadRowPolicy = "error"
    rows: list[BadRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"bad_row_policy {self.policy!r}: expected one of {list(POLICIES)}")

    def report(self, file: str, line: int, reason: str) -> None:
        """Record a bad row; raise :class:`DataError` under policy ``error``."""
        bad = BadRow(str(file), line, reason)
        if self.policy == "error":
            raise DataError(f"{bad} (data.bad_row_policy is 'error'; 'skip' skips and counts bad rows)")
        self.rows.append(bad)
        logger.warning("skipped bad row %s", bad)

    @property
    def ok(self) -> bool:
        return not self.rows

    def counts(self) -> dict[str, int]:
        """Bad rows per reason kind."""
        return dict(Counter(row.kind for row in self.rows))

    def summary(self) -> dict:
        """For logs and the run summary: total, per reason, and the first rows in full."""
        return {"bad_rows": len(self.rows), "by_reason": self.counts(), "examples": [str(r) for r in self.rows[:20]]}


def undecodable_byte(text: str) -> int | None:
    """The first byte a ``surrogateescape`` read could not decode as UTF-8 (files are read that way so one
    bad byte makes one bad row, not an unreadable file), or None."""
    for char in text:
        if "\udc80" <= char <= "\udcff":
            return ord(char) - 0xDC00
    return None
