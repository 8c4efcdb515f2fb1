"""Server-sent events: the wire format of ``stream: true`` answers."""

from __future__ import annotations

import json
from typing import Any


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event (``data`` as JSON unless it is already text)."""
    body = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {body}\n\n"


def stream_error(exc: Exception) -> dict[str, Any]:
    """An error after the response has started (its status line is sent already): reported in the stream."""
    return {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}}
