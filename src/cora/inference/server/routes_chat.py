"""``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI's chat format, the panorama as an
``image_url`` part (a ``data:`` URL), the system prompt and earlier turns through the model's chat template."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cora.inference.protocols import Conversation
from cora.inference.server.batching import Finished
from cora.inference.server.deps import Service, check_length, client_left, json_object
from cora.inference.server.errors import RequestError
from cora.inference.server.events import sse, stream_error
from cora.inference.server.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    ChunkChoice,
    ModelCard,
    ModelList,
    Usage,
    parse,
)
from cora.inference.server.service import PanoramaService, Submitted

logger = logging.getLogger(__name__)
router = APIRouter()


@router.get("/v1/models", response_model=ModelList)
async def models(service: Service) -> ModelList:
    return ModelList(data=[ModelCard(id=service.model_name, created=service.started)])


@router.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=[Depends(check_length)])
async def chat_completions(request: Request, service: Service) -> ChatCompletion | StreamingResponse | Response:
    body = parse(ChatRequest, await json_object(request))
    body.check_supported()
    if body.model is not None and body.model != service.model_name:
        served = f"{body.model!r} is not served here (GET /v1/models lists {service.model_name!r})"
        raise RequestError(404, f"model: {served}", "model")
    options = body.decoding()
    image, conversation, prompt_tokens = await run_in_threadpool(_inputs, service, body)
    head = ChatCompletionChunk(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}", created=int(time.time()), model=service.model_name, choices=[]
    )
    submitted = service.submit(image, conversation, options, body.stop or ())  # a full queue: 503 before any byte
    if body.stream:
        usage = prompt_tokens if body.include_usage else None
        return StreamingResponse(_chunks(service, submitted, head, usage, request), media_type="text/event-stream")
    result = await service.answer(submitted, request.is_disconnected)
    if result is None:
        return client_left()
    return ChatCompletion(
        id=head.id,
        created=head.created,
        model=head.model,
        choices=[ChatChoice(message=AssistantMessage(content=result.answer), finish_reason=result.finish_reason)],
        usage=Usage(
            prompt_tokens=prompt_tokens, completion_tokens=result.tokens, total_tokens=prompt_tokens + result.tokens
        ),
    )


def _inputs(service: PanoramaService, body: ChatRequest) -> tuple[np.ndarray, Conversation, int]:
    """The panorama ``[H, W, 3]`` uint8 (the last ``image_url`` part anywhere), the conversation, and the
    prompt's tokens as the model sees them."""
    url, field = body.image_url()
    conversation = body.conversation()
    tokens = service.check_query(conversation, "messages")  # before decoding: a refused prompt costs no image
    return service.decode_data_url(url, field), conversation, tokens


async def _chunks(
    service: PanoramaService,
    submitted: Submitted,
    head: ChatCompletionChunk,
    prompt_tokens: int | None,
    request: Request,
) -> AsyncIterator[str]:
    """OpenAI's stream: the assistant role, one chunk per non-empty piece, a chunk with the finish reason,
    a usage chunk when asked (``stream_options.include_usage``), then ``data: [DONE]``."""

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return sse(head.model_copy(update={"choices": [choice]}).model_dump())

    yield chunk({"role": "assistant"})
    try:
        async for item in service.stream(submitted, request.is_disconnected):
            if isinstance(item, Finished):
                yield chunk({}, item.reason)
                if prompt_tokens is not None:
                    usage = Usage(
                        prompt_tokens=prompt_tokens,
                        completion_tokens=len(item.ids),
                        total_tokens=prompt_tokens + len(item.ids),
                    )
                    yield sse(head.model_copy(update={"choices": [], "usage": usage}).model_dump())
            elif item:
                yield chunk({"content": item})
    except Exception as exc:
        logger.exception("streaming failed")
        yield sse(stream_error(exc))
        return
    yield sse("[DONE]")
