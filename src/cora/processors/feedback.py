"""The fields of a feedback row (``query``, ``answer``, ``rating``, ``correction``): the one rule shared by the
server that writes feedback files (``/v1/feedback``) and the reader that trains on them
(``cora.data.feedback``), which the layers below both of them hold."""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    """A feedback row's field that is missing or wrong (``field`` names it); the reader counts the row as
    bad, the server answers 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_feedback(row: dict[str, Any]) -> dict[str, Any]:
    """A feedback row's ``query`` and ``answer`` (non-empty, stripped) and its ``rating`` (-1 or +1) and/or
    ``correction`` (stripped; empty = none), as the feedback file keeps them; :class:`FieldError` else."""
    out: dict[str, Any] = {}
    for name in ("query", "answer"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise FieldError(name, f"field {name!r}: expected a non-empty string, got {value!r}")
        out[name] = value.strip()
    rating, correction = row.get("rating"), row.get("correction")
    if rating is not None:
        if isinstance(rating, bool) or rating not in (-1, 1):
            raise FieldError("rating", f"field 'rating': expected -1 or +1, got {rating!r}")
        out["rating"] = rating
    if correction is not None:
        if not isinstance(correction, str):
            raise FieldError("correction", f"field 'correction': expected a string, got {correction!r}")
        if correction.strip():
            out["correction"] = correction.strip()
    if "rating" not in out and "correction" not in out:
        raise FieldError("rating", "neither 'rating' nor 'correction': the row says nothing about the answer")
    return out
