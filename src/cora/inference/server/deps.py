"""What the routes share before a body is validated: the service, the body's declared size, its JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from cora.inference.server.errors import RequestError
from cora.inference.server.service import PanoramaService


def get_service(request: Request) -> PanoramaService:
    return request.app.state.service


Service = Annotated[PanoramaService, Depends(get_service)]


def check_length(request: Request, service: Service) -> None:
    """A route dependency: runs before the body is read, so an oversized upload is never buffered."""
    service.check_body_length(request.headers.get("content-length"))


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"body: not valid JSON ({exc})", "body") from exc
    except RecursionError:  # [[[[...]]]]: the parser gives up long before any real request would
        raise RequestError(400, "body: JSON nested too deeply", "body") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"body: expected a JSON object, got {type(body).__name__}", "body")
    return body


def client_left() -> Response:
    """What a route returns when its client went away before the answer (nobody reads it; nginx's 499)."""
    return Response(status_code=499)
