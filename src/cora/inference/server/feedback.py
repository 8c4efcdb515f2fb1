"""``POST /v1/feedback``: a user's verdict on an answer, appended to a feedback JSONL file in the format
``cora.data.feedback`` trains from (corrections for SFT, ratings for ``rl`` stages).

Each image is stored once, named by its content hash (``images/<sha256>.<ext>``, written atomically); each
row is one ``write`` of a whole line under a lock, flushed and synced, so concurrent requests and a crash
never leave half a row.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from cora.inference.server.errors import RequestError
from cora.processors.feedback import FieldError, check_feedback
from cora.utils.io import atomic_open

MAX_TEXT = 16_384  # characters per text field: a question, an answer, a correction — not a disk filler
_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


class FeedbackStore:
    """The feedback file and its image folder (created on the first row)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.images = self.path.parent / "images"
        self._lock = threading.Lock()

    def save_image(self, data: bytes, image_format: str) -> str:
        """The image's path relative to the feedback file (written once per distinct content); ``image_format``:
        PIL's name for it (its file suffix)."""
        suffix = _FORMATS.get(image_format, ".img")
        name = hashlib.sha256(data).hexdigest()[:32] + suffix
        target = self.images / name
        if not target.is_file():
            self.images.mkdir(parents=True, exist_ok=True)
            with atomic_open(target, "wb") as handle:
                handle.write(data)
        return f"images/{name}"

    def append(self, row: dict[str, Any]) -> None:
        """Append one row as one whole line (locked, flushed to disk)."""
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())


def feedback_row(body: dict[str, Any]) -> dict[str, Any]:
    """The JSONL row of a feedback request without its image (the file's own rules, ``check_feedback``):
    413 for a text over ``MAX_TEXT`` characters, 400 naming the field."""
    for name in ("query", "answer", "correction"):
        value = body.get(name)
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise RequestError(413, f"{name}: {len(value)} characters is over the limit of {MAX_TEXT}", name)
    try:
        return check_feedback(body)
    except FieldError as exc:
        raise RequestError(400, str(exc), exc.field) from None
