"""``create_app``: the FastAPI app of a generator (``cora serve`` runs it with uvicorn)."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cora.inference.protocols import AnswerGenerator
from cora.inference.server import routes_answer, routes_chat, routes_health, routes_web
from cora.inference.server.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE, DEFAULT_MAX_WAIT_MS
from cora.inference.server.errors import RequestError, error_payload, from_validation_errors
from cora.inference.server.feedback import FeedbackStore
from cora.inference.server.routes_web import STATIC
from cora.inference.server.service import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_QUERY_TOKENS,
    PanoramaService,
)

logger = logging.getLogger(__name__)


def create_app(
    generator: AnswerGenerator,
    *,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    model_name: str = "cora",
    allow_paths: str | os.PathLike[str] | None = None,
    info: dict[str, Any] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    api_key: str | None = None,
    max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    feedback_file: str | os.PathLike[str] | None = None,
    examples: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """A FastAPI app answering about panoramas with ``generator`` (e.g. a :class:`~cora.inference.PanoramaGenerator`).

    ``max_image_bytes``: the largest encoded image accepted (413 above); ``max_image_pixels``: the
    largest image, read from its header before decoding (413 above). ``allow_paths``: a folder JSON
    requests may name image files in (off by default: a server reachable by others must not read its
    own files for them). ``api_key``: every ``/v1/`` request must send ``Authorization: Bearer KEY``
    (401 otherwise; ``/health`` stays open). ``max_query_tokens``: the longest templated question (413
    above, checked before the image is decoded). ``info``: extra fields for ``/health`` (no server paths).
    At most two images are decoded at once (each can take hundreds of MB while it decodes).

    ``feedback_file``: where ``POST /v1/feedback`` appends rows (off when None); ``examples``: a folder of
    panoramas the page offers. The page at ``/`` and ``/docs`` are served from the package (no network).

    Concurrent requests are answered in batches of up to ``max_batch`` (a batch waits at most ``max_wait_ms``
    for company); at most ``max_queue`` wait, more are refused with 503 and ``Retry-After``.
    """
    app = FastAPI(title="CORA", description="Answers questions about 360° panoramas.", docs_url=None, redoc_url=None)
    service = PanoramaService(
        generator,
        max_image_bytes,
        model_name,
        allow_paths,
        info,
        max_image_pixels,
        max_query_tokens,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
    )
    service.feedback = FeedbackStore(feedback_file) if feedback_file is not None else None
    service.examples = Path(examples).resolve() if examples is not None else None
    app.state.service = service
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, service=service)
    if api_key:
        app.middleware("http")(_require_key(api_key))
    app.exception_handler(RequestError)(_request_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(Exception)(_server_error)
    for module in (routes_health, routes_answer, routes_chat, routes_web):
        app.include_router(module.router)
    return app


def _require_key(api_key: str) -> Callable[[Request, Callable], Awaitable[Response]]:
    expected = f"Bearer {api_key}".encode()

    async def check(request: Request, call_next: Callable) -> Response:
        given = request.headers.get("authorization", "").encode()
        if request.url.path.startswith("/v1/") and not hmac.compare_digest(given, expected):
            error = RequestError(401, "authorization: a valid API key is required (Authorization: Bearer KEY)")
            return await _request_error(request, error)
        return await call_next(request)

    return check


async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.payload(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (404 no such route, 405 wrong method) in the same shape."""
    detail = exc.detail if isinstance(exc.detail, str) else "refused"
    message = f"{request.method} {request.url.path}: {detail}"
    return await _request_error(request, RequestError(exc.status_code, message, headers=exc.headers))


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    """A failure of ours (the model, the device), in the same shape; the traceback goes to the log."""
    logger.error("request to %s failed", request.url.path, exc_info=exc)
    return JSONResponse(error_payload(f"{type(exc).__name__}: {exc}", "server_error"), status_code=500)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation (of declared parameters), in the same shape as the routes' errors."""
    return await _request_error(request, from_validation_errors(exc.errors()))


class BodyLimit:
    """ASGI middleware: a body is counted while it is read and refused (413) as soon as it passes the
    service's limit, so a chunked upload without ``Content-Length`` costs at most the limit in memory."""

    def __init__(self, app: ASGIApp, service: PanoramaService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, seen = self.service.max_body_bytes, 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # raised inside the route's body read: answered by the RequestError handler
                    raise self.service.body_too_large(f"more than {limit}")
            return message

        await self.app(scope, counted, send)
