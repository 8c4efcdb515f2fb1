"""HTTP server around a :class:`~cora.inference.PanoramaGenerator` (FastAPI; ``cora serve`` runs it).

Endpoints:

- ``GET /health``: model name, views, decoding options, device.
- ``POST /v1/answer``: a panorama and a query, as multipart (``image`` file + ``query``
  field) or JSON (``{"image": "<base64>", "query": ...}``; ``{"path": ...}`` only when the
  app allows local paths). ``stream=true`` answers with ``text/event-stream``: one
  ``data: {"text": ...}`` event per piece, then ``event: done`` with the whole answer.
  Otherwise ``{"answer", "tokens", "ms"}``.
- ``POST /v1/chat/completions``: the OpenAI chat format; the panorama is an ``image_url``
  content part holding a ``data:`` URL, the query is the last user message's text
  (``stream: true`` gives OpenAI chunks and ``data: [DONE]``).

One model answers one request at a time (a lock around it): the model is not thread-safe
and, on a CPU, concurrent requests would only compete for the same cores. Bad input gets
a 4xx JSON error in OpenAI's shape, ``{"error": {"message", "type", "param"}}``, where
``param`` names the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from cora.inference.protocols import AnswerGenerator
from cora.processors.image_io import ImageError, decode_image, load_image

logger = logging.getLogger(__name__)

_END = object()  # end of a stream
DEFAULT_MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_NEW_TOKENS_LIMIT = 2048


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a message, the offending field (``param``)."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def payload(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param}}


def _as_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise RequestError(400, f"{field}: expected true or false, got {value!r}", field)


def _query(value: Any, field: str = "query") -> str:
    if value is None:
        raise RequestError(400, f"{field}: missing (the question to answer about the panorama)", field)
    if not isinstance(value, str):
        raise RequestError(400, f"{field}: expected a string, got {type(value).__name__}", field)
    if not value.strip():
        raise RequestError(400, f"{field}: empty", field)
    return value


def _b64decode(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"{field}: not valid base64 ({exc})", field) from exc


class PanoramaService:
    """The request-independent part: decoding images, limits, the model lock, timing."""

    def __init__(
        self,
        generator: AnswerGenerator,
        max_image_bytes: int,
        model_name: str,
        allow_paths: bool,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.generator = generator
        self.max_image_bytes = max_image_bytes
        self.model_name = model_name
        self.allow_paths = allow_paths
        self.info = dict(info or {})
        self.lock = threading.Lock()

    # -- inputs --------------------------------------------------------------------------
    def check_size(self, size: int, field: str) -> None:
        if size > self.max_image_bytes:
            raise RequestError(413, f"{field}: {size} bytes is over the limit of {self.max_image_bytes} bytes", field)

    def decode(self, data: bytes, field: str) -> np.ndarray:
        """Encoded image bytes → ``[H, W, 3]`` uint8; 413 when too large, 422 when not an image."""
        self.check_size(len(data), field)
        if not data:
            raise RequestError(400, f"{field}: empty", field)
        try:
            return decode_image(data, name=field)
        except ImageError as exc:  # its message starts with the field name
            raise RequestError(422, str(exc), field) from exc

    def load_path(self, path: Any, field: str = "path") -> np.ndarray:
        if not self.allow_paths:
            raise RequestError(
                403,
                f"{field}: local paths are not allowed by this server (start it with "
                "--allow-paths, or upload the image)",
                field,
            )
        if not isinstance(path, str) or not Path(path).is_file():
            raise RequestError(400, f"{field}: no such file: {path!r}", field)
        self.check_size(Path(path).stat().st_size, field)
        try:
            return load_image(path)
        except ImageError as exc:
            raise RequestError(422, f"{field}: {exc}", field) from exc

    def decoding_overrides(
        self,
        max_tokens: Any = None,
        temperature: Any = None,
        top_p: Any = None,
        max_tokens_field: str = "max_new_tokens",
    ) -> dict[str, Any]:
        """Request options → :class:`~cora.inference.DecodingOptions` overrides (greedy unless temperature > 0)."""
        overrides: dict[str, Any] = {}
        if max_tokens is not None:
            field = max_tokens_field
            if isinstance(max_tokens, bool) or not str(max_tokens).strip().isdigit():
                raise RequestError(400, f"{field}: expected a positive integer, got {max_tokens!r}", field)
            value = int(max_tokens)
            if not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
                raise RequestError(400, f"{field}: {value} is outside 1..{MAX_NEW_TOKENS_LIMIT}", field)
            overrides["max_new_tokens"] = value
        if temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature < 0:
                raise RequestError(400, f"temperature: expected a number >= 0, got {temperature!r}", "temperature")
            if temperature > 0:
                overrides.update(do_sample=True, temperature=float(temperature))
            else:
                overrides["do_sample"] = False
        if top_p is not None:
            if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1:
                raise RequestError(400, f"top_p: expected a number in (0, 1], got {top_p!r}", "top_p")
            overrides["top_p"] = float(top_p)
        return overrides

    # -- generation (under the lock) -----------------------------------------------------
    def answer(self, image: np.ndarray, query: str, options: dict[str, Any]) -> dict[str, Any]:
        """``{"answer", "tokens", "ms", "finish_reason"}`` for one panorama and query."""
        start = time.perf_counter()
        with self.lock:
            ids = self.generator.generate_ids([image], [query], **options)[0]
        text = self.generator.decode(ids)
        limit = options.get("max_new_tokens", self.generator.options.max_new_tokens)
        return {
            "answer": text,
            "tokens": len(ids),
            "ms": round((time.perf_counter() - start) * 1000.0, 1),
            "finish_reason": "length" if len(ids) >= limit else "stop",
        }

    def stream(self, image: np.ndarray, query: str, options: dict[str, Any]) -> Iterator[str]:
        """Text pieces as they are generated.

        The generation runs in its own thread, which holds the lock until the answer is
        complete: a client that leaves mid-stream abandons this iterator without closing it,
        so a lock held by the iterator itself would never be released.
        """
        pieces: queue.Queue[Any] = queue.Queue()

        def work() -> None:
            try:
                with self.lock:
                    for piece in self.generator.stream(image, query, **options):
                        pieces.put(piece)
            except BaseException as exc:  # re-raised by the consumer
                pieces.put(exc)
            finally:
                pieces.put(_END)

        threading.Thread(target=work, daemon=True, name="cora-stream").start()
        while (item := pieces.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.model_name,
            **self.generator.describe(),
            "max_image_bytes": self.max_image_bytes,
            "allow_paths": self.allow_paths,
            **self.info,
        }


def _sse(data: Any, event: str | None = None) -> str:
    body = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {body}\n\n"


def create_app(
    generator: AnswerGenerator,
    *,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    model_name: str = "cora",
    allow_paths: bool = False,
    info: dict[str, Any] | None = None,
) -> FastAPI:
    """A FastAPI app answering about panoramas with ``generator`` (e.g. a :class:`PanoramaGenerator`).

    ``max_image_bytes``: the largest encoded image accepted (413 above). ``allow_paths``: let
    JSON requests name a file on the server's disk (off by default: a server reachable by
    others must not read its own files for them). ``info``: extra fields for ``/health``
    (e.g. the run folder).
    """
    service = PanoramaService(generator, max_image_bytes, model_name, allow_paths, info)
    app = FastAPI(title="CORA", description="Answers questions about 360° panoramas.")
    app.state.service = service

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.payload(), status_code=exc.status)

    async def _json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"body: not valid JSON ({exc})", "body") from exc
        if not isinstance(body, dict):
            raise RequestError(400, f"body: expected a JSON object, got {type(body).__name__}", "body")
        return body

    def _check_length(request: Request) -> None:
        # refuse before reading: a body this large cannot hold an image under the limit
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > 2 * max_image_bytes + 65536:
            raise RequestError(
                413, f"body: {length} bytes is over the limit (images up to {max_image_bytes} bytes)", "image"
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.post("/v1/answer")
    async def answer(request: Request) -> Any:
        _check_length(request)
        content_type = request.headers.get("content-type", "")
        # cheap checks first: a bad option is reported before the image is decoded
        if content_type.startswith("multipart/form-data"):
            fields = await request.form()
        elif content_type.startswith("application/json"):
            fields = await _json_body(request)
        else:
            raise RequestError(
                415,
                f"content-type: {content_type or 'none'}; send multipart/form-data (image, query) or application/json",
                "content-type",
            )
        query = _query(fields.get("query"))
        options = service.decoding_overrides(fields.get("max_new_tokens"))
        stream = _as_bool(fields.get("stream"), "stream")
        image = await _answer_image(fields)
        if stream:
            return StreamingResponse(_answer_events(image, query, options), media_type="text/event-stream")
        return await run_in_threadpool(service.answer, image, query, options)

    async def _answer_image(fields: Any) -> np.ndarray:
        """The panorama of a request, decoded off the event loop (a large JPEG takes a while)."""
        upload = fields.get("image")
        if not isinstance(fields, dict):  # multipart
            if not hasattr(upload, "read"):
                detail = "missing" if upload is None else "a text field"
                raise RequestError(400, f"image: {detail} (expected a multipart file field named 'image')", "image")
            data = await upload.read(max_image_bytes + 1)
            return await run_in_threadpool(service.decode, data, "image")
        if upload is not None:
            if not isinstance(upload, str):
                raise RequestError(400, "image: expected a base64 string", "image")
            return await run_in_threadpool(service.decode, _b64decode(upload, "image"), "image")
        if fields.get("path") is not None:
            return await run_in_threadpool(service.load_path, fields["path"])
        raise RequestError(
            400, "image: missing (base64 of the panorama file" + (", or path" if allow_paths else "") + ")", "image"
        )

    def _answer_events(image: np.ndarray, query: str, options: dict[str, Any]) -> Iterator[str]:
        start = time.perf_counter()
        pieces: list[str] = []
        try:
            for piece in service.stream(image, query, options):
                pieces.append(piece)
                yield _sse({"text": piece})
        except Exception as exc:  # the status line is sent already: report in the stream
            logger.exception("streaming failed")
            yield _sse({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}}, "error")
            return
        yield _sse({"answer": "".join(pieces).strip(), "ms": round((time.perf_counter() - start) * 1000.0, 1)}, "done")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        _check_length(request)
        body = await _json_body(request)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        options = service.decoding_overrides(max_tokens, body.get("temperature"), body.get("top_p"), "max_tokens")
        stream = _as_bool(body.get("stream"), "stream")
        image, query = await run_in_threadpool(_chat_inputs, service, body.get("messages"))
        model = body.get("model") or model_name
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if stream:
            return StreamingResponse(
                _chat_chunks(image, query, options, completion_id, created, model), media_type="text/event-stream"
            )
        result = await run_in_threadpool(service.answer, image, query, options)
        prompt_tokens = generator.prompt_tokens(query)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result["answer"]},
                    "finish_reason": result["finish_reason"],
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": result["tokens"],
                "total_tokens": prompt_tokens + result["tokens"],
            },
        }

    def _chat_chunks(
        image: np.ndarray, query: str, options: dict[str, Any], completion_id: str, created: int, model: str
    ) -> Iterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        yield chunk({"role": "assistant", "content": ""})
        try:
            for piece in service.stream(image, query, options):
                yield chunk({"content": piece})
        except Exception as exc:
            logger.exception("streaming failed")
            yield _sse({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}})
            return
        yield chunk({}, "stop")
        yield _sse("[DONE]")

    return app


def _chat_inputs(service: PanoramaService, messages: Any) -> tuple[np.ndarray, str]:
    """(panorama, query) of an OpenAI ``messages`` list: the last ``image_url`` part anywhere, the text
    of the last user message. Earlier turns are not replayed (the model answers one question)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages: expected a non-empty list of {role, content}", "messages")
    image_ref: tuple[str, str] | None = None
    query: str | None = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(400, f"messages[{i}]: expected an object with role and content", f"messages[{i}]")
        content = message.get("content")
        texts: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                field = f"messages[{i}].content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str):
                        raise RequestError(400, f"{field}.image_url.url: missing", f"{field}.image_url.url")
                    image_ref = (url, f"{field}.image_url.url")
                else:
                    raise RequestError(400, f"{field}: unsupported content part type {kind!r} (text, image_url)", field)
        elif content is not None:
            raise RequestError(
                400, f"messages[{i}].content: expected a string or a list of parts", f"messages[{i}].content"
            )
        if message.get("role") == "user" and texts:
            query = "\n".join(t for t in texts if t.strip())
    if image_ref is None:
        raise RequestError(
            400,
            "messages: no image_url content part (CORA answers about a panorama: send it as a data: URL)",
            "messages",
        )
    if query is None or not query.strip():
        raise RequestError(400, "messages: no user message with text (the question)", "messages")
    url, field = image_ref
    if not url.startswith("data:"):
        raise RequestError(
            400, f"{field}: only data: URLs are accepted (data:image/...;base64,...), got {url[:40]!r}", field
        )
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise RequestError(400, f"{field}: the data: URL must be base64 encoded", field)
    service.check_size(len(payload) * 3 // 4, field)
    return service.decode(_b64decode(payload, field), field), query
