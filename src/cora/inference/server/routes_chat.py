"""``POST /v1/chat/completions``: OpenAI's chat format, the panorama as an ``image_url`` part (a ``data:`` URL)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Literal

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cora.inference.server.deps import Service, check_length, client_left, json_object
from cora.inference.server.events import sse, stream_error
from cora.inference.server.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    ChunkChoice,
    DecodingOverrides,
    Usage,
    parse,
)
from cora.inference.server.service import PanoramaService

logger = logging.getLogger(__name__)
router = APIRouter()


@router.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=[Depends(check_length)])
async def chat_completions(request: Request, service: Service) -> ChatCompletion | StreamingResponse | Response:
    body = parse(ChatRequest, await json_object(request))
    options = body.decoding()
    image, query = await run_in_threadpool(_inputs, service, body)
    head = ChatCompletionChunk(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=body.model or service.model_name,
        choices=[],
    )
    if body.stream:
        chunks = _chunks(service, image, query, options, head, request)
        return StreamingResponse(chunks, media_type="text/event-stream")
    result = await service.answer(image, query, options, request.is_disconnected)
    if result is None:
        return client_left()
    prompt_tokens = service.generator.prompt_tokens(query)
    return ChatCompletion(
        id=head.id,
        created=head.created,
        model=head.model,
        choices=[ChatChoice(message=AssistantMessage(content=result.answer), finish_reason=result.finish_reason)],
        usage=Usage(
            prompt_tokens=prompt_tokens, completion_tokens=result.tokens, total_tokens=prompt_tokens + result.tokens
        ),
    )


def _inputs(service: PanoramaService, body: ChatRequest) -> tuple[np.ndarray, str]:
    """The panorama ``[H, W, 3]`` uint8 (the last ``image_url`` part anywhere) and the question."""
    url, field = body.image_url()
    query = body.question()
    service.check_query(query, "messages")  # before decoding: a refused question costs no image
    return service.decode_data_url(url, field), query


async def _chunks(
    service: PanoramaService,
    image: np.ndarray,
    query: str,
    options: DecodingOverrides,
    head: ChatCompletionChunk,
    request: Request,
) -> AsyncIterator[str]:
    """OpenAI's stream: the assistant role, one chunk per piece, a ``stop`` chunk, then ``data: [DONE]``."""

    def chunk(delta: dict[str, str], finish: Literal["stop"] | None = None) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return sse(head.model_copy(update={"choices": [choice]}).model_dump())

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for piece in service.stream(image, query, options, request.is_disconnected):
            yield chunk({"content": piece})
    except Exception as exc:
        logger.exception("streaming failed")
        yield sse(stream_error(exc))
        return
    yield chunk({}, "stop")
    yield sse("[DONE]")
