"""The browser page (``/``), what it asks the server for (``/v1/views``, ``/v1/examples``), the feedback it
sends (``POST /v1/feedback``) and FastAPI's ``/docs`` served from the package (no CDN).

The page and its third-party assets (Photo Sphere Viewer, three.js, Swagger UI: pinned in ``web/``,
copied in with their licenses) live in ``static/``; nothing is fetched from the network at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from cora.inference.server.deps import Service, check_length, json_object
from cora.inference.server.errors import RequestError
from cora.inference.server.feedback import feedback_row
from cora.processors.geometry import ViewGeometry

STATIC = Path(__file__).resolve().parent / "static"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    vendor = "/static/vendor/swagger-ui-dist"
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="CORA API",
        swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
        swagger_css_url=f"{vendor}/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )


def outline(view: ViewGeometry, points: int = 8) -> list[list[float]]:
    """The view's border as (lon, lat) degrees, ``points`` per edge, longitudes continuous around the view's
    centre."""
    lon, lat = view.border_lonlat(points, endpoint=False, wrap=False)
    return [[round(float(a), 3), round(float(b), 3)] for a, b in zip(lon, lat, strict=True)]


def view_outlines(views: Sequence[ViewGeometry]) -> list[dict[str, Any]]:
    """``/v1/views``' list: each view's geometry and outline (none for the whole panorama)."""
    return [
        {**view.to_dict(), "outline": None if view.projection == "erp" and view.hfov_deg >= 360 else outline(view)}
        for view in views
    ]


@router.get("/v1/views")
async def views(service: Service) -> dict:
    """Where each view the model sees of a panorama looks, with its outline (the page draws them)."""
    if service.view_outlines is None:  # the same for every request: computed once
        service.view_outlines = view_outlines(service.generator.view_geometries)
    return {"object": "list", "data": service.view_outlines}


@router.get("/v1/examples")
async def examples(service: Service) -> dict:
    """Panoramas the server offers (``cora serve --examples DIR``)."""
    return {"object": "list", "data": [{"name": p.name, "url": f"/v1/examples/{p.name}"} for p in _examples(service)]}


@router.get("/v1/examples/{name}")
async def example(name: str, service: Service) -> FileResponse:
    for path in _examples(service):
        if path.name == name:
            return FileResponse(path)
    raise RequestError(404, f"name: no example {name!r} (GET /v1/examples lists them)", "name")


def _examples(service: Service) -> list[Path]:
    root = service.examples
    if root is None:
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in EXAMPLE_SUFFIXES)


@router.post("/v1/feedback", dependencies=[Depends(check_length)])
async def feedback(request: Request, service: Service) -> dict:
    """``{"image": "data:image/...;base64,...", "query", "answer", "rating": -1|1, "correction"}`` → one row
    of the feedback JSONL (the image stored once by content hash)."""
    store = service.feedback
    if store is None:
        raise RequestError(404, "feedback: this server keeps no feedback (start it with --feedback FILE)")
    body = await json_object(request)
    url = body.get("image")
    if not isinstance(url, str):
        raise RequestError(400, "image: expected the panorama as a data: URL", "image")
    fields = feedback_row(body)  # the text fields are checked before the image costs anything
    data = await run_in_threadpool(service.data_url_bytes, url, "image")
    # Its header only (size, pixels, a format PIL knows): the image is kept, not looked at (training reads it).
    service.check_size(len(data), "image")
    image_format = await run_in_threadpool(service.check_pixels, data, "image")
    if image_format is None:
        raise RequestError(422, "image: not an image (its header names no image format)", "image")
    row = {"image": await run_in_threadpool(store.save_image, data, image_format), **fields}
    await run_in_threadpool(store.append, row)
    return {"object": "feedback", "image": row["image"]}
