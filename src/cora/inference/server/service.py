"""``PanoramaService``: what every request shares — image decoding and limits, the model and its lock."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cora.inference.protocols import AnswerGenerator, Conversation, Prompt, UnsupportedPrompt
from cora.inference.server.batching import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_WAIT_MS,
    Batcher,
    Finished,
    Job,
    loop_delivery,
)
from cora.inference.server.errors import RequestError
from cora.inference.server.feedback import FeedbackStore
from cora.inference.server.schemas import AnswerResponse, DecodingOverrides, HealthResponse
from cora.processors.image_io import ImageError, decode_image, load_image

DEFAULT_MAX_IMAGE_BYTES = 32 * 1024 * 1024
# An 8K panorama (8192×4096) with room to spare; a small file can declare a huge image (a 3 MB PNG of
# 46000×23000 pixels took 6.6 GB to decode), so the limit is read from the header before decoding.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
PATH_REFUSED = "path: no readable image of that name under the allowed folder"
# Tokens of the templated prompt (the question plus the chat template around it); a 300,000-character
# question held the model lock for 38 s.
DEFAULT_MAX_QUERY_TOKENS = 1024
# Images decoded at once: each can take hundreds of MB while it decodes, outside the model lock.
DEFAULT_MAX_DECODES = 2
# How often a request waiting for its first (or next) token checks whether its client is still there.
POLL_SECONDS = 0.05
Disconnected = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Submitted:
    """A queued answer: its job and the queue its text arrives on."""

    job: Job
    items: asyncio.Queue


class PanoramaService:
    """The request-independent part: decoding images, limits, the batching worker, timing.

    Only the batching worker (:class:`~cora.inference.server.batching.Batcher`) calls the model: it is not
    thread-safe, and concurrent requests are answered faster together, in one batch, than one by one.
    """

    def __init__(
        self,
        generator: AnswerGenerator,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        model_name: str = "cora",
        allow_paths: str | os.PathLike[str] | None = None,
        info: dict[str, Any] | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS,
        max_decodes: int = DEFAULT_MAX_DECODES,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        if isinstance(allow_paths, bool):
            raise TypeError("allow_paths takes the folder requests may read images from (or None), not a bool")
        self.generator = generator
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels
        self.model_name = model_name
        self.path_root = Path(allow_paths).resolve() if allow_paths is not None else None
        self.info = dict(info or {})
        self.max_query_tokens = max_query_tokens
        self.decoding = threading.BoundedSemaphore(max_decodes)
        self.batcher = Batcher(generator, max_batch, max_wait_ms, max_queue)
        self.started = int(time.time())
        self.feedback: FeedbackStore | None = None  # set by create_app
        self.examples: Path | None = None
        # measured now, before the batching worker owns the model (one blank panorama through it)
        self.vision_tokens = generator.vision_tokens()
        self.view_outlines: list[dict[str, Any]] | None = None  # /v1/views' answer, made on its first request

    # -- inputs --------------------------------------------------------------------------
    def check_size(self, size: int, field: str) -> None:
        if size > self.max_image_bytes:
            raise RequestError(413, f"{field}: {size} bytes is over the limit of {self.max_image_bytes} bytes", field)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: an image under the limit as base64 (4/3) in JSON, with room to spare."""
        return 2 * self.max_image_bytes + 65536

    def check_body_length(self, length: str | None) -> None:
        """Refuse a body before reading it when its declared length is over :attr:`max_body_bytes` (a chunked
        body, without a length, is counted while it is read: :class:`~cora.inference.server.app.BodyLimit`)."""
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            raise self.body_too_large(length)

    def body_too_large(self, size: int | str) -> RequestError:
        return RequestError(
            413, f"body: {size} bytes is over the limit (images up to {self.max_image_bytes} bytes)", "image"
        )

    @property
    def allow_paths(self) -> bool:
        return self.path_root is not None

    def check_pixels(self, source: bytes | Path, field: str) -> str | None:
        """The image's format as its header names it (PIL's ``PNG``, ``JPEG`` ...; None when PIL does not know
        it); 413 when the header declares more pixels than the limit (nothing decoded yet)."""
        limit = self.max_image_pixels
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                (width, height), image_format = image.size, image.format
        except Image.DecompressionBombError:  # PIL's own guard, raised from the header over 2 × its limit
            size = f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0)}"
            raise RequestError(413, f"{field}: {size} pixels is over the limit of {limit} pixels", field) from None
        except (UnidentifiedImageError, OSError, ValueError):
            return None  # not an image PIL knows: the decoder reports it
        if width * height > limit:
            raise RequestError(413, f"{field}: {width}×{height} pixels is over the limit of {limit} pixels", field)
        return image_format

    def check_query(self, query: Prompt, field: str = "query") -> int:
        """The prompt's tokens as the model sees them (the template's text and the panorama's vision tokens);
        413 when the prompt (a question, or a conversation) is longer than the token limit (a cheap character
        bound first: no tokenizer runs on a megabyte of text)."""
        limit = self.max_query_tokens
        if isinstance(query, Conversation):
            texts = [query.query, query.system_prompt or "", *(t for turn in query.history for t in turn)]
            chars = sum(len(t) for t in texts)
        else:
            chars = len(query)
        try:
            tokens = 0 if chars > 32 * limit else self.generator.prompt_tokens(query)
        except UnsupportedPrompt as exc:
            raise RequestError(400, f"{field}: {exc}", field) from None
        if chars > 32 * limit or tokens > limit:
            size = f"{chars} characters" if chars > 32 * limit else f"{tokens} tokens"
            raise RequestError(413, f"{field}: the prompt is {size}, over the limit of {limit} tokens", field)
        return tokens + self.vision_tokens

    def decode(self, data: bytes, field: str) -> np.ndarray:
        """Encoded image bytes → ``[H, W, 3]`` uint8; 413 when too large, 422 when not an image."""
        self.check_size(len(data), field)
        if not data:
            raise RequestError(400, f"{field}: empty", field)
        self.check_pixels(data, field)
        try:
            with self.decoding:
                return decode_image(data, name=field)
        except ImageError as exc:  # its message starts with the field name
            raise RequestError(422, str(exc), field) from exc

    def decode_base64(self, text: str, field: str) -> np.ndarray:
        """Base64 of an encoded image → ``[H, W, 3]`` uint8."""
        return self.decode(_b64decode(text, field), field)

    def decode_data_url(self, url: str, field: str) -> np.ndarray:
        """A ``data:image/...;base64,...`` URL → ``[H, W, 3]`` uint8 (the server fetches nothing itself)."""
        return self.decode(self.data_url_bytes(url, field), field)

    def data_url_bytes(self, url: str, field: str) -> bytes:
        """The encoded image of a ``data:`` URL (its size checked before the base64 is decoded)."""
        if not url.startswith("data:"):
            raise RequestError(
                400, f"{field}: only data: URLs are accepted (data:image/...;base64,...), got {url[:40]!r}", field
            )
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise RequestError(400, f"{field}: the data: URL must be base64 encoded", field)
        self.check_size(len(payload) * 3 // 4, field)  # before decoding: the base64 of a huge image is huge
        return _b64decode(payload, field)

    def load_path(self, path: str, field: str = "path") -> np.ndarray:
        """A file under the app's allowed folder → ``[H, W, 3]`` uint8.

        The path is resolved (``..`` and links followed) and must stay under the folder; a path outside it,
        a missing file, a folder and a file that is not an image all get the same 404, so the answers tell
        nothing about the rest of the disk.
        """
        if self.path_root is None:
            raise RequestError(
                403,
                f"{field}: local paths are not allowed by this server (start it with "
                "--allow-paths DIR, or upload the image)",
                field,
            )
        target = (self.path_root / path).resolve()
        if not (target.is_relative_to(self.path_root) and target.is_file()):
            raise RequestError(404, PATH_REFUSED, field)
        self.check_size(target.stat().st_size, field)
        self.check_pixels(target, field)
        try:
            with self.decoding:
                return load_image(target)
        except ImageError as exc:
            raise RequestError(404, PATH_REFUSED, field) from exc

    # -- generation (batched) --------------------------------------------------------------
    def submit(
        self, image: np.ndarray, query: Prompt, options: DecodingOverrides, stop: Sequence[str] = ()
    ) -> Submitted:
        """Queue the generation of one answer (before any response starts: a full queue is a 503 with
        ``Retry-After``, for streamed requests too). Call from the request's event loop."""
        items: asyncio.Queue[str | Finished] = asyncio.Queue()
        deliver = loop_delivery(asyncio.get_running_loop(), items)
        limit = options.get("max_new_tokens", self.generator.options.max_new_tokens)
        job = Job(image, query, dict(options), deliver, self.generator.decode, limit, tuple(stop))
        self.batcher.submit(job)
        return Submitted(job, items)

    async def answer(self, submitted: Submitted, disconnected: Disconnected | None = None) -> AnswerResponse | None:
        """The whole answer, its length in tokens and the time it took; ``None`` when the client left first
        (its generation is cancelled)."""
        start = time.perf_counter()
        async with contextlib.aclosing(self.stream(submitted, disconnected)) as items:
            async for item in items:
                if isinstance(item, Finished):
                    return AnswerResponse(
                        answer=item.text.strip(),
                        tokens=len(item.ids),
                        ms=round((time.perf_counter() - start) * 1000.0, 1),
                        finish_reason=item.reason,
                    )
        return None

    async def stream(
        self, submitted: Submitted, disconnected: Disconnected | None = None
    ) -> AsyncIterator[str | Finished]:
        """Text pieces as they are generated, then the :class:`Finished` answer (an error is raised).
        ``disconnected()`` is asked every :data:`POLL_SECONDS`; however the iteration ends (the client
        left, the iterator was closed), the job is cancelled and stops within one token."""
        job, items = submitted.job, submitted.items
        check = time.monotonic() + POLL_SECONDS
        try:
            while True:
                try:
                    item = await asyncio.wait_for(items.get(), max(0.0, check - time.monotonic()))
                except TimeoutError:
                    item = None
                if time.monotonic() >= check:  # asked whether pieces come or not: they may come to nobody
                    if disconnected is not None and await disconnected():
                        return
                    check = time.monotonic() + POLL_SECONDS
                if item is None:
                    continue
                if isinstance(item, Finished) and item.error is not None:
                    raise item.error
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            job.cancel.set()

    def health(self) -> HealthResponse:
        fields = {
            "model": self.model_name,
            **self.generator.describe(),
            "max_image_bytes": self.max_image_bytes,
            "allow_paths": self.allow_paths,
            "batching": self.batcher.stats(),
        }
        return HealthResponse.model_validate(fields | self.info)


def _b64decode(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"{field}: not valid base64 ({exc})", field) from exc
