"""``POST /v1/answer``: a panorama and a question, as multipart or JSON; the answer whole or streamed."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cora.inference.server.batching import Finished
from cora.inference.server.deps import Service, check_length, client_left, json_object
from cora.inference.server.errors import RequestError
from cora.inference.server.events import sse, stream_error
from cora.inference.server.schemas import AnswerForm, AnswerJSON, AnswerResponse, parse
from cora.inference.server.service import PanoramaService, Submitted

logger = logging.getLogger(__name__)
router = APIRouter()


@router.post("/v1/answer", response_model=AnswerResponse, dependencies=[Depends(check_length)])
async def answer(request: Request, service: Service) -> AnswerResponse | StreamingResponse | Response:
    # the fields are validated before the image is decoded: a bad option costs no decoding
    fields = await _fields(request)
    await run_in_threadpool(service.check_query, fields.query)
    image = await _image(fields, service)
    submitted = service.submit(image, fields.query, fields.decoding())  # a full queue: 503 before any byte
    if fields.stream:
        return StreamingResponse(_events(service, submitted, request), media_type="text/event-stream")
    result = await service.answer(submitted, request.is_disconnected)
    return result if result is not None else client_left()


async def _fields(request: Request) -> AnswerForm | AnswerJSON:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        return parse(AnswerForm, dict(form.items()))
    if content_type.startswith("application/json"):
        return parse(AnswerJSON, await json_object(request))
    raise RequestError(
        415,
        f"content-type: {content_type or 'none'}; send multipart/form-data (image, query) or application/json",
        "content-type",
    )


async def _image(fields: AnswerForm | AnswerJSON, service: PanoramaService) -> np.ndarray:
    """The panorama ``[H, W, 3]`` uint8, decoded off the event loop (a large JPEG takes a while)."""
    if isinstance(fields, AnswerForm):
        data = await fields.image.read(service.max_image_bytes + 1)  # one byte over is enough to refuse it
        return await run_in_threadpool(service.decode, data, "image")
    if fields.image is not None:
        return await run_in_threadpool(service.decode_base64, fields.image, "image")
    if fields.path is not None:
        return await run_in_threadpool(service.load_path, fields.path)
    or_path = ", or path" if service.allow_paths else ""
    raise RequestError(400, f"image: missing (base64 of the panorama file{or_path})", "image")


async def _events(service: PanoramaService, submitted: Submitted, request: Request) -> AsyncIterator[str]:
    """One ``data: {"text"}`` event per piece, then ``event: done`` with the whole answer (or ``event: error``)."""
    start = time.perf_counter()
    answer = ""
    try:
        async for piece in service.stream(submitted, request.is_disconnected):
            if isinstance(piece, Finished):
                answer = piece.text.strip()
            elif piece:
                yield sse({"text": piece})
    except Exception as exc:
        logger.exception("streaming failed")
        yield sse(stream_error(exc), "error")
        return
    yield sse({"answer": answer, "ms": round((time.perf_counter() - start) * 1000.0, 1)}, "done")
