"""Dynamic batching: concurrent requests are answered together, one model call per batch.

Requests become :class:`Job` s in a bounded queue. One worker thread owns the model: it takes the oldest
job and those queued with the same decoding options (up to ``max_batch``), waiting up to ``max_wait_ms``
for more when the previous batch had company (a lone client never waits), and runs them as one
:meth:`~cora.inference.protocols.AnswerGenerator.generate_rows` call. Each job receives its text as it is
generated, on its request's event loop; a job whose client left is cancelled and stops at the next token
while the rest of its batch goes on. A full queue is refused at once (503 with ``Retry-After``), so a
burst never makes requests wait without bound.

Written here rather than taken from a serving library: vLLM/TGI batch plain language models and own the
model's process, whereas ours takes panoramas through the project's own generators and must run on a CPU
inside this app.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from cora.inference.protocols import AnswerGenerator, Prompt
from cora.inference.server.errors import RequestError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_WAIT_MS = 10.0
DEFAULT_MAX_QUEUE = 64


@dataclass(frozen=True)
class Finished:
    """The last item a job receives: generation is over (``error`` set if it failed).

    ``text`` is the whole answer (cut before a stop sequence if one came), ``reason`` is OpenAI's
    ``finish_reason``: ``length`` when ``max_new_tokens`` cut it, else ``stop``.
    """

    ids: list[int]
    text: str = ""
    reason: Literal["stop", "length"] = "stop"
    error: BaseException | None = None


@dataclass(eq=False)
class Job:
    """One request's answer: its inputs, the text delivered so far, and its cancellation.

    ``deliver`` is called from the worker thread with each new piece of text (``str``) and finally a
    :class:`Finished`; the server wires it to an ``asyncio.Queue`` of the request's event loop. ``stop``:
    strings that end the answer (not included); text that could be the start of one is held back until
    it is known not to be.
    """

    image: np.ndarray
    query: Prompt
    options: dict[str, Any]
    deliver: Callable[[str | Finished], None]
    decode: Callable[[list[int]], str]
    limit: int  # max_new_tokens: an answer this long was cut
    stop: tuple[str, ...] = ()
    ids: list[int] = field(default_factory=list)
    sent: str = ""
    stopped_at: int | None = None  # where a stop sequence begins in the text
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: bool = False

    # -- TokenSink -------------------------------------------------------------------------
    def token(self, token_id: int) -> None:
        """Append a token and deliver the text it adds (held back while it ends in half a character)."""
        if self.stopped_at is not None:
            return
        self.ids.append(token_id)
        text = self.decode(self.ids)
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return  # an incomplete UTF-8 sequence, or a re-spacing that the final text settles
        safe = len(text)
        for stop in self.stop:
            if (at := text.find(stop, max(0, len(self.sent) - len(stop)))) >= 0:
                self.stopped_at = at if self.stopped_at is None else min(self.stopped_at, at)
            safe = min(safe, len(text) - _partial_suffix(text, stop))
        if self.stopped_at is not None:
            safe = self.stopped_at
            self.cancel.set()  # the generation of this row ends at the next token
        if safe > len(self.sent):
            piece, self.sent = text[len(self.sent) : safe], text[:safe]
            self.deliver(piece)

    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def finish(self, error: BaseException | None = None) -> None:
        """Deliver the :class:`Finished` item, once (a later call, e.g. after a failure, does nothing)."""
        if self.finished:
            return
        self.finished = True
        if error is not None:
            self.deliver(Finished(list(self.ids), self.sent, "stop", error))
            return
        if self.stopped_at is not None:
            text, reason = self.sent, "stop"
        else:
            text = self.decode(self.ids)
            reason = "length" if len(self.ids) >= self.limit else "stop"
            if text.startswith(self.sent) and len(text) > len(self.sent):
                self.deliver(text[len(self.sent) :])
        self.deliver(Finished(list(self.ids), text, reason))


def _partial_suffix(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop`` (text to hold back)."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if stop.startswith(text[-n:]):
            return n
    return 0


class Batcher:
    """The worker thread that owns the model and answers jobs in batches (started on the first job)."""

    def __init__(
        self,
        generator: AnswerGenerator,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch {max_batch} and max_queue {max_queue} must be ≥ 1, max_wait_ms ≥ 0")
        self.generator = generator
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.held: collections.deque[Job] = collections.deque()  # taken, but other options than the batch's
        self._waiting = 0  # queued + held: what max_queue bounds (held jobs still wait)
        self._count_lock = threading.Lock()
        self.batch_seconds = 1.0  # running estimate of one batch's time, for Retry-After
        self.batches = 0
        self.answered = 0
        self.last_batch = 1
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, job: Job) -> None:
        """Queue ``job``; 503 with ``Retry-After`` when ``max_queue`` jobs wait already."""
        self._ensure_started()
        with self._count_lock:
            waiting = self._waiting
            if waiting < self.max_queue:
                self._waiting += 1
        if waiting >= self.max_queue:
            retry = max(1, round(self.batch_seconds * (1 + waiting / self.max_batch)))
            message = f"server busy: {waiting} requests are waiting; retry after {retry} s"
            raise RequestError(503, message, headers={"Retry-After": str(retry)})
        self.jobs.put_nowait(job)

    def _started(self, jobs: Sequence[Job]) -> None:
        with self._count_lock:
            self._waiting -= len(jobs)

    def stats(self) -> dict[str, float]:
        """Limits and counters (``/health``): how full the batches are, how many wait."""
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait * 1000.0,
            "max_queue": self.max_queue,
            "waiting": self._waiting,
            "batches": self.batches,
            "answered": self.answered,
            "mean_batch_size": round(self.answered / self.batches, 2) if self.batches else 0.0,
        }

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="cora-batcher")
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch: list[Job] = []
            try:
                batch = self._collect()
                if batch:
                    self._run(batch)
            except BaseException as exc:  # this thread must not die: every later request would wait forever
                # Every job of the batch not yet finished reports it (its route answers 500 or an error event).
                logger.exception("a batch of %d failed; the batching worker goes on", len(batch))
                for job in batch:
                    with contextlib.suppress(Exception):
                        job.finish(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))

    def _collect(self) -> list[Job]:
        """The oldest job and those with its options that arrive within ``max_wait`` (cancelled ones dropped)."""
        first = self.held.popleft() if self.held else self.jobs.get()
        batch, others = [first], []
        for job in list(self.held):
            if len(batch) < self.max_batch and job.options == first.options:
                self.held.remove(job)
                batch.append(job)
        # Waiting pays only under concurrency: one client alone would lose max_wait on every answer.
        deadline = time.monotonic() + (self.max_wait if self.last_batch > 1 else 0.0)
        while len(batch) < self.max_batch:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            (batch if job.options == first.options else others).append(job)
        self.held.extend(others)
        self._started(batch)
        self.last_batch = len(batch)
        live = []
        for job in batch:
            if job.cancelled():
                job.finish()
            else:
                live.append(job)
        return live

    def _run(self, batch: Sequence[Job]) -> None:
        start = time.perf_counter()
        try:
            self.generator.generate_rows(
                [j.image for j in batch], [j.query for j in batch], list(batch), **batch[0].options
            )
        finally:
            self.batches += 1
            self.answered += len(batch)
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * (time.perf_counter() - start)
        for job in batch:
            job.finish()


def loop_delivery(loop: asyncio.AbstractEventLoop, items: asyncio.Queue[str | Finished]) -> Callable[[Any], None]:
    """``deliver`` for a job whose request runs on ``loop``: items are put on ``items`` thread-safely
    (dropped once the loop is closed: nobody is listening any more)."""

    def deliver(item: Any) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(items.put_nowait, item)

    return deliver
