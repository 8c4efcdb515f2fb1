"""The server's request validation and response shapes, on a stand-in generator (no model: fast).

Every refused request is a 4xx ``{"error": {"message", "type", "param"}}`` whose ``param`` names the field as
the client wrote it and whose message starts with that name; the JSON of the answers keeps its keys.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")

from fastapi.testclient import TestClient

from cora.inference import AnswerGenerator, Conversation, DecodingOptions, GeneratorInfo
from cora.inference.server import MAX_NEW_TOKENS_LIMIT, create_app
from cora.inference.server.errors import field_path
from cora.inference.server.schemas import ChatRequest, decoding_overrides, parse


class StandIn:
    """An :class:`AnswerGenerator` that answers "a b c" (three tokens) and records the options it was given."""

    options = DecodingOptions(max_new_tokens=3)

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def generate_ids(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[list[int]]:
        assert all(isinstance(im, np.ndarray) and im.shape == (8, 16, 3) for im in images)
        self.seen.append(options)
        return [[1, 2, 3] for _ in images]

    def generate(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[str]:
        return [self.decode(ids) for ids in self.generate_ids(images, queries, **options)]

    def __call__(self, image: Any, query: str, **options: Any) -> str:
        return self.generate([image], [query], **options)[0]

    def stream(self, image: Any, query: str, **options: Any) -> Iterator[str]:
        self.seen.append(options)
        yield from ["a", " b", " c"]

    def generate_rows(
        self, images: Sequence[Any], queries: Sequence[str], sinks: Sequence[Any], **options: Any
    ) -> list[list[int]]:
        rows = self.generate_ids(images, queries, **options)
        for sink, row in zip(sinks, rows, strict=True):
            for token in row:
                sink.token(token)
        return rows

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(["a", " b", " c"][i - 1] for i in ids)

    def prompt_tokens(self, query: Any) -> int:
        return 7

    def vision_tokens(self) -> int:
        return 5

    @property
    def view_geometries(self) -> list[Any]:
        return []

    def describe(self) -> GeneratorInfo:
        return {"device": "cpu", "views": 2, "view_kinds": ["global", "tile"], "decoding": {"max_new_tokens": 3}}


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def _messages(*parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


@pytest.fixture()
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture()
def client(stand_in) -> TestClient:
    return TestClient(create_app(stand_in, model_name="m", info={"run": "r"}))


def test_the_stand_in_is_a_generator():
    assert isinstance(StandIn(), AnswerGenerator)


def test_health_and_answer_json_keep_their_keys(client):
    health = client.get("/health").json()
    batching = health.pop("batching")
    assert {k: batching[k] for k in ("max_batch", "max_wait_ms", "max_queue")} == {
        "max_batch": 8,
        "max_wait_ms": 10.0,
        "max_queue": 64,
    }
    assert set(batching) == {
        "max_batch",
        "max_wait_ms",
        "max_queue",
        "waiting",
        "batches",
        "answered",
        "mean_batch_size",
    }
    assert health == {
        "status": "ok",
        "model": "m",
        "device": "cpu",
        "views": 2,
        "view_kinds": ["global", "tile"],
        "decoding": {"max_new_tokens": 3},
        "max_image_bytes": 32 * 1024 * 1024,
        "allow_paths": False,
        "run": "r",
    }
    answer = client.post("/v1/answer", files={"image": ("p.png", PNG)}, data={"query": "q"}).json()
    assert list(answer) == ["answer", "tokens", "ms", "finish_reason"]
    assert answer["answer"] == "a b c" and answer["tokens"] == 3 and answer["finish_reason"] == "length"
    assert client.get("/openapi.json").status_code == 200


def test_chat_completion_and_its_options(client, stand_in):
    parts = ({"type": "image_url", "image_url": URL}, {"type": "text", "text": "q"})  # image_url as the URL itself
    body = {"messages": _messages(*parts), "max_completion_tokens": 2, "temperature": 0.5, "top_p": 0.9, "n": 1}
    completion = client.post("/v1/chat/completions", json=body).json()
    assert completion["object"] == "chat.completion" and completion["model"] == "m"
    assert completion["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}  # 7 + 5 vision
    assert stand_in.seen[-1] == {"max_new_tokens": 2, "do_sample": True, "temperature": 0.5, "top_p": 0.9}
    client.post("/v1/chat/completions", json={"messages": _messages(*parts), "temperature": 0, "max_tokens": 5})
    assert stand_in.seen[-1] == {"max_new_tokens": 5, "do_sample": False}


def test_streams_are_server_sent_events(client):
    body = {"image": base64.b64encode(PNG).decode(), "query": "q", "stream": 1}
    events = client.post("/v1/answer", json=body).text.strip().split("\n\n")
    assert events[:3] == ['data: {"text": "a"}', 'data: {"text": " b"}', 'data: {"text": " c"}']
    name, data = events[-1].split("\n")
    assert name == "event: done" and json.loads(data.removeprefix("data: "))["answer"] == "a b c"
    parts = ({"type": "image_url", "image_url": {"url": URL}}, {"type": "text", "text": "q"})
    chunks = client.post("/v1/chat/completions", json={"messages": _messages(*parts), "stream": True}).text
    events = [block.removeprefix("data: ") for block in chunks.strip().split("\n\n")]
    assert events[-1] == "[DONE]"
    first, last = json.loads(events[0]), json.loads(events[-2])
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]  # 3 tokens of max 3


IMAGE = {"type": "image_url", "image_url": {"url": URL}}
TEXT = {"type": "text", "text": "q"}


@pytest.mark.parametrize(
    "body, param, words",
    [
        ({}, "messages", "non-empty"),
        ({"messages": "hi"}, "messages", "non-empty"),
        ({"messages": [5]}, "messages[0]", "an object with role and content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a string or a list of parts"),
        ({"messages": _messages({"type": "image_url"}, TEXT)}, "messages[0].content[0].image_url.url", "missing"),
        ({"messages": _messages(IMAGE, {"type": "text", "text": 5})}, "messages[0].content[1].text", "string"),
        ({"messages": _messages(IMAGE, TEXT), "max_tokens": "many"}, "max_tokens", "positive integer"),
        (
            {"messages": _messages(IMAGE, TEXT), "max_completion_tokens": MAX_NEW_TOKENS_LIMIT + 1},
            "max_completion_tokens",
            "outside",
        ),
        ({"messages": _messages(IMAGE, TEXT), "top_p": 0}, "top_p", "(0, 1]"),
        ({"messages": _messages(IMAGE, TEXT), "stream": "maybe"}, "stream", "true or false"),
        ({"messages": _messages(IMAGE, TEXT), "model": 3}, "model", "string"),
        ({"messages": [{"role": "system", "content": "x"}, *_messages(IMAGE)]}, "messages", "must end with a user"),
        (
            {"messages": _messages({"type": "image_url", "image_url": {"url": "data:image/png,abc"}}, TEXT)},
            "messages[0].content[0].image_url.url",
            "base64 encoded",
        ),
    ],
)
def test_bad_chat_fields_are_400_naming_the_field(client, body, param, words):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"].startswith(f"{param}: ") and words in error["message"], error
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "request_kwargs, status, param, words",
    [
        ({"json": {"image": 5, "query": "q"}}, 400, "image", "base64 string"),
        ({"json": {"query": 5}}, 400, "query", "expected a string, got int"),
        ({"json": [1, 2]}, 400, "body", "a JSON object"),
        ({"json": {"query": "q", "max_new_tokens": True}}, 400, "max_new_tokens", "positive integer"),
        (
            {"data": {"query": "q", "max_new_tokens": "x"}, "files": {"image": ("p.png", PNG)}},
            400,
            "max_new_tokens",
            "x",
        ),
        ({"files": {"image": ("p.png", b"")}, "data": {"query": "q"}}, 400, "image", "empty"),
        ({"content": b"", "headers": {"content-length": str(10**10)}}, 413, "image", "over the limit"),
    ],
)
def test_bad_answer_fields_are_4xx_naming_the_field(client, request_kwargs, status, param, words):
    response = client.post("/v1/answer", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"], error


def test_multipart_and_json_fields_read_alike(client, stand_in):
    client.post("/v1/answer", files={"image": ("p.png", PNG)}, data={"query": "q", "max_new_tokens": " 2 "})
    client.post("/v1/answer", json={"image": base64.b64encode(PNG).decode(), "query": "q", "max_new_tokens": "2"})
    assert stand_in.seen == [{"max_new_tokens": 2}, {"max_new_tokens": 2}]


def test_fastapi_validation_has_the_same_shape(stand_in):
    app = create_app(stand_in)

    @app.get("/count")
    async def count(n: int) -> int:  # a route with a declared parameter, validated by FastAPI itself
        return n

    response = TestClient(app).get("/count", params={"n": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n" and response.json()["error"]["message"].startswith("n: ")


def test_field_paths_and_overrides():
    assert field_path(("messages", 0, "content", 1, "image_url", "url")) == "messages[0].content[1].image_url.url"
    assert field_path(()) == ""
    assert decoding_overrides() == {}
    assert decoding_overrides(4, 0.0, 1) == {"max_new_tokens": 4, "do_sample": False, "top_p": 1.0}
    request = parse(
        ChatRequest, {"messages": [{"role": "user", "content": [IMAGE, TEXT, {"type": "text", "text": " "}]}]}
    )
    assert request.conversation() == Conversation("q") and request.image_url() == (
        URL,
        "messages[0].content[0].image_url.url",
    )


def test_a_model_that_answers_single_questions_refuses_a_conversation_with_a_400():
    from cora.inference import UnsupportedPrompt

    class SingleQuestions(StandIn):  # as an adapted VLM: its prompt builder refuses history and system prompts
        def prompt_tokens(self, query: Any) -> int:
            if isinstance(query, Conversation) and (query.history or query.system_prompt is not None):
                raise UnsupportedPrompt("this model answers single questions (no system message or earlier turns)")
            return 7

    client = TestClient(create_app(SingleQuestions()))
    user = {
        "role": "user",
        "content": [{"type": "text", "text": "q"}, {"type": "image_url", "image_url": {"url": URL}}],
    }
    refused = client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "s"}, user]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "messages"
    assert "single questions" in refused.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json={"messages": [user]}).status_code == 200
