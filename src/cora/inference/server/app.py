"""``create_app``: the FastAPI app of a generator (``cora serve`` runs it with uvicorn)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cora.inference.protocols import AnswerGenerator
from cora.inference.server import routes_answer, routes_chat, routes_health
from cora.inference.server.errors import RequestError, from_validation_errors
from cora.inference.server.service import DEFAULT_MAX_IMAGE_BYTES, PanoramaService


def create_app(
    generator: AnswerGenerator,
    *,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    model_name: str = "cora",
    allow_paths: bool = False,
    info: dict[str, Any] | None = None,
) -> FastAPI:
    """A FastAPI app answering about panoramas with ``generator`` (e.g. a :class:`~cora.inference.PanoramaGenerator`).

    ``max_image_bytes``: the largest encoded image accepted (413 above). ``allow_paths``: let
    JSON requests name a file on the server's disk (off by default: a server reachable by
    others must not read its own files for them). ``info``: extra fields for ``/health``
    (e.g. the run folder).
    """
    app = FastAPI(title="CORA", description="Answers questions about 360° panoramas.")
    app.state.service = PanoramaService(generator, max_image_bytes, model_name, allow_paths, info)
    app.exception_handler(RequestError)(_request_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    for module in (routes_health, routes_answer, routes_chat):
        app.include_router(module.router)
    return app


async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.payload(), status_code=exc.status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation (of declared parameters), in the same shape as the routes' errors."""
    return await _request_error(request, from_validation_errors(exc.errors()))
