"""Short answers: normalised exact match, and the yaw error of grounding answers.

Grounding answers are boxes in ``norm1000`` units of the ERP (``{"bbox_2d": [x1, y1, x2, y2]}``,
see :mod:`cora.data.jsonl`): x 0..1000 spans yaw -180°..180°, and ``x1 > x2`` means the box wraps
across the ±180° seam. The yaw error compares box centres the short way round the circle, so a
box just left of the seam and one just right of it are close, not 360° apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cora.data.records import CAPTION_QUERY

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BBOX = re.compile(r'"bbox_2d"\s*:\s*\[' + ",".join([_NUMBER] * 4) + r"\]")


def normalise_answer(text: str) -> str:
    """Lower case, punctuation and articles' surrounding space removed, whitespace collapsed."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str]) -> bool:
    """Whether the normalised prediction equals a normalised reference."""
    return normalise_answer(prediction) in {normalise_answer(r) for r in references}


def answer_accuracy(pairs: Iterable[tuple[str, Sequence[str]]]) -> float:
    """Fraction of (prediction, references) whose normalised prediction equals a normalised reference."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no predictions to score")
    hits = sum(exact_match(p, refs) for p, refs in pairs)
    return hits / len(pairs)


def box_yaw_deg(text: str) -> float | None:
    """Yaw in degrees, in [-180, 180), of the centre of the first ``"bbox_2d": [x1, y1, x2, y2]`` in
    ``text`` (norm1000 units of the ERP width; ``x1 > x2`` wraps across the seam). None when the text
    holds no such box or its x coordinates are outside 0..1000."""
    match = _BBOX.search(text)
    if match is None:
        return None
    x1, _, x2, _ = (float(v) for v in match.groups())
    if not (0.0 <= x1 <= 1000.0 and 0.0 <= x2 <= 1000.0):
        return None
    # A wrapped box runs from x1 to the right edge and on from the left edge to x2.
    centre = (x1 + x2) / 2.0 if x1 <= x2 else ((x1 + x2 + 1000.0) / 2.0) % 1000.0
    return _wrap(centre / 1000.0 * 360.0 - 180.0)


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def yaw_error_deg(prediction: str, reference: str) -> float | None:
    """Absolute yaw difference (0..180°, the short way round) between the centres of the predicted
    and the reference box. None when either holds no box: a reference without one is not a
    grounding answer, and a prediction without one is unparsed (callers count it apart, as
    :func:`box_yaw_deg` of the prediction tells), never an error value."""
    ref, pred = box_yaw_deg(reference), box_yaw_deg(prediction)
    if ref is None or pred is None:
        return None
    return abs(_wrap(pred - ref))


@dataclass(frozen=True)
class QuestionScore:
    """One sample's answer scores (a line of ``per_question.jsonl``)."""

    url: str
    query: str
    question_type: str | None
    seam: bool | None
    prediction: str
    exact_match: bool | None  # None for captions and samples without a reference
    grounding: bool  # a reference parses as a box
    yaw_error_deg: float | None  # None unless grounding and the prediction parses as a box

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "query": self.query,
            "type": self.question_type,
            "seam": self.seam,
            "prediction": self.prediction,
            "exact_match": self.exact_match,
            "yaw_error_deg": self.yaw_error_deg,
        }


def score_question(
    url: str,
    query: str,
    prediction: str,
    references: Sequence[str],
    question_type: str | None = None,
    seam: bool | None = None,
) -> QuestionScore:
    """Exact match (not for captions: ``question_type`` ``caption``, or the caption query when the
    type is unknown) and, when a reference is a box, the yaw error to the nearest reference box."""
    caption = question_type == "caption" if question_type is not None else query == CAPTION_QUERY
    match = None if caption or not references else exact_match(prediction, references)
    boxes = [r for r in references if box_yaw_deg(r) is not None]
    errors = [e for e in (yaw_error_deg(prediction, r) for r in boxes) if e is not None]
    return QuestionScore(
        url, query, question_type, seam, prediction, match, bool(boxes), min(errors) if errors else None
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _match_block(scores: Sequence[QuestionScore]) -> dict[str, Any]:
    """``n`` samples and their exact-match rate (over those that have one; null when none does)."""
    matches = [float(s.exact_match) for s in scores if s.exact_match is not None]
    return {"n": len(scores), "exact_match": _mean(matches)}


def answer_metrics(scores: Sequence[QuestionScore]) -> dict[str, Any]:
    """``exact_match`` over the non-caption samples; ``by_type`` (when any sample has a type),
    ``seam``/``no_seam`` (non-caption samples whose seam flag is known, when any is) and
    ``yaw_error_deg`` (``n`` grounding samples, ``mean`` error of those whose prediction parses,
    ``unparsed``; when any sample is a grounding one). A block nothing could fill is left out."""
    result: dict[str, Any] = {"exact_match": _match_block(scores)["exact_match"]}
    types = sorted({s.question_type for s in scores if s.question_type is not None})
    if types:
        result["by_type"] = {t: _match_block([s for s in scores if s.question_type == t]) for t in types}
    flagged = [s for s in scores if s.seam is not None and s.exact_match is not None]
    if flagged:
        result["seam"] = _match_block([s for s in flagged if s.seam])
        result["no_seam"] = _match_block([s for s in flagged if not s.seam])
    grounding = [s for s in scores if s.grounding]
    if grounding:
        result["yaw_error_deg"] = yaw_block([s.yaw_error_deg for s in grounding])
    return result


def yaw_block(errors: Sequence[float | None]) -> dict[str, Any]:
    """The yaw-error summary of grounding answers: ``n``, ``mean`` over the predictions that hold a box,
    ``unparsed`` (those that do not, None in ``errors``)."""
    parsed = [e for e in errors if e is not None]
    return {"n": len(errors), "mean": _mean(parsed), "unparsed": len(errors) - len(parsed)}
