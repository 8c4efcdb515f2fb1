"""The browser page (``/``), what it asks the server for (``/v1/views``, ``/v1/examples``), the feedback it
sends (``POST /v1/feedback``) and FastAPI's ``/docs`` served from the package (no CDN).

The page and its third-party assets (Photo Sphere Viewer, three.js, Swagger UI: pinned in ``web/``,
copied in with their licenses) live in ``static/``; nothing is fetched from the network at run time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    """The view's border as (lon, lat) degrees, ``points`` per edge (a perspective tile's edges curve on
    the sphere); longitudes continuous around the view's centre."""
    w, h = view.width, view.height
    t = np.linspace(0.0, 1.0, points, endpoint=False)
    u = np.concatenate([t * w, np.full(points, w), (1 - t) * w, np.zeros(points)])
    v = np.concatenate([np.zeros(points), t * h, np.full(points, h), (1 - t) * h])
    lon, lat = view.lonlat(u, v, wrap=False)
    return [[round(float(a), 3), round(float(b), 3)] for a, b in zip(lon, lat, strict=True)]


@router.get("/v1/views")
async def views(service: Service) -> dict:
    """Where each view the model sees of a panorama looks, with its outline (the page draws them)."""
    out = []
    for view in service.generator.view_geometries:
        whole = view.projection == "erp" and view.hfov_deg >= 360
        out.append(
            {
                "index": view.index,
                "kind": view.kind,
                "projection": view.projection,
                "yaw_deg": view.yaw_deg,
                "pitch_deg": view.pitch_deg,
                "hfov_deg": view.hfov_deg,
                "vfov_deg": view.vfov_deg,
                "outline": None if whole else outline(view),
            }
        )
    return {"object": "list", "data": out}


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
    row = feedback_row(body, "")  # the text fields are checked before the image costs anything
    data = await run_in_threadpool(service.data_url_bytes, url, "image")
    await run_in_threadpool(service.decode, data, "image")  # the same checks as a question's image
    row["image"] = await run_in_threadpool(store.save_image, data)
    await run_in_threadpool(store.append, row)
    return {"object": "feedback", "image": row["image"]}
