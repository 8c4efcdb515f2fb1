"""``create_app``: the FastAPI app of a generator (``cora serve`` runs it with uvicorn)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cora.inference.protocols import AnswerGenerator
from cora.inference.server import routes_answer, routes_chat, routes_health
from cora.inference.server.errors import RequestError, from_validation_errors
from cora.inference.server.service import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_QUERY_TOKENS,
    PanoramaService,
)


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
) -> FastAPI:
    """A FastAPI app answering about panoramas with ``generator`` (e.g. a :class:`~cora.inference.PanoramaGenerator`).

    ``max_image_bytes``: the largest encoded image accepted (413 above); ``max_image_pixels``: the
    largest image, read from its header before decoding (413 above). ``allow_paths``: a folder JSON
    requests may name image files in (off by default: a server reachable by others must not read its
    own files for them). ``api_key``: every ``/v1/`` request must send ``Authorization: Bearer KEY``
    (401 otherwise; ``/health`` stays open). ``max_query_tokens``: the longest templated question (413
    above, checked before the image is decoded). ``info``: extra fields for ``/health`` (no server paths).
    At most two images are decoded at once (each can take hundreds of MB while it decodes).
    """
    app = FastAPI(title="CORA", description="Answers questions about 360° panoramas.")
    service = PanoramaService(
        generator, max_image_bytes, model_name, allow_paths, info, max_image_pixels, max_query_tokens
    )
    app.state.service = service
    if api_key:
        app.middleware("http")(_require_key(api_key))
    app.exception_handler(RequestError)(_request_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    for module in (routes_health, routes_answer, routes_chat):
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
    return JSONResponse(exc.payload(), status_code=exc.status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation (of declared parameters), in the same shape as the routes' errors."""
    return await _request_error(request, from_validation_errors(exc.errors()))
