"""Refused requests as OpenAI-shaped JSON errors: ``{"error": {"message", "type", "param"}}``.

``param`` names the offending field the way a client wrote it, e.g. ``messages[0].content[1].image_url.url``,
and every message starts with that name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a message, the offending field (``param``)."""

    def __init__(
        self, status: int, message: str, param: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = dict(headers or {})  # e.g. Retry-After on a 503

    def payload(self) -> dict[str, Any]:
        kind = {401: "authentication_error"}.get(self.status, "invalid_request_error")
        return error_payload(self.message, kind if self.status < 500 else "server_error", self.param)


def error_payload(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param}}


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as a client names the field: ``("messages", 0, "content")`` →
    ``messages[0].content``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


_SOURCES = ("body", "query", "path", "header", "cookie")


def from_validation_errors(errors: Sequence[Mapping[str, Any]], status: int = 400) -> RequestError:
    """The first error of a pydantic validation as a :class:`RequestError` (one error per response, as the
    hand-checked fields report theirs). Our validators raise ``ValueError`` with the text to show."""
    error = errors[0]
    loc = list(error.get("loc", ()))
    if len(loc) > 1 and loc[0] in _SOURCES:  # FastAPI's request validation says where the field came from
        loc = loc[1:]
    param = field_path(loc) or "body"
    if error.get("type") == "missing":
        detail = "missing"
    elif error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        detail = str(error["ctx"]["error"])
    else:
        detail = str(error.get("msg", "invalid"))
    return RequestError(status, f"{param}: {detail}", param)


def from_validation_error(exc: ValidationError) -> RequestError:
    return from_validation_errors(exc.errors())
