"""Logging set-up for the command line: one rich handler, per-module loggers."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time.

    A handler bound to the stderr of its creation breaks once that stream is closed or
    swapped (pytest's capture, a notebook cell), and every later record prints a
    "Logging error" traceback.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: StreamHandler.__init__ assigns the stream; this handler always uses the current one."""


def setup_logging(level: str | int | None = None) -> None:
    """Route every ``logging.getLogger(__name__)`` through one rich handler.

    The level comes from the argument, else ``CORA_LOG_LEVEL``, else INFO.
    """
    level = level or os.environ.get("CORA_LOG_LEVEL", "INFO")
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        fmt = "%(name)s: %(message)s"
    else:  # logs piped to a file or CI: one plain line per record, no wrapping
        handler = _CurrentStderr()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S", handlers=[handler], force=True)
    # The HF progress bars for tiny local saves/loads are noise.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Third-party chatter that hides our own messages at INFO.
    for noisy in ("httpx", "urllib3", "lightning.pytorch.utilities.rank_zero", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
