"""``cora serve`` through the official ``openai`` client, over a real socket: models, errors, finish reasons,
streaming chunks, usage, stop sequences, refused parameters, system prompts and earlier turns."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("openai", reason="needs the openai client (dev extra)")

import httpx
import openai

from cora.inference import Conversation
from cora.inference.server import create_app
from tests.test_generator import OPTIONS, panoramas, tiny  # noqa: F401  (fixtures)
from tests.test_server import QUERY, generator, served  # noqa: F401  (fixtures)

MODEL = "tiny-run"


@pytest.fixture(scope="module")
def base(generator):  # noqa: F811
    with served(create_app(generator, model_name=MODEL)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base):
    with openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def image(panoramas):  # noqa: F811
    # panoramas[1] + QUERY: the random tiny model answers "one huge huge huge ..." (readable pieces to stream)
    return panoramas[1]


def _messages(path: str, question: str = QUERY, before: list[dict] | None = None) -> list[dict]:
    url = f"data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}"
    user = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}],
    }
    return [*(before or []), user]


def test_models_lists_the_served_model_and_requests_for_another_are_404(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["param"] == "model" and MODEL in refused.value.body["message"]


def test_a_completion_uses_the_system_prompt_and_counts_the_vision_tokens(client, generator, image):  # noqa: F811
    system = {"role": "system", "content": "Answer in one word."}
    reply = client.chat.completions.create(model=MODEL, messages=_messages(image, before=[system]))
    conversation = Conversation(QUERY, (), "Answer in one word.")
    assert reply.model == MODEL and reply.choices[0].message.content == generator(image, conversation)
    assert generator(image, conversation) != generator(image, QUERY)  # the system prompt reached the model
    assert reply.choices[0].finish_reason == "length"  # 8 tokens: the random model never stops by itself
    vision = generator.vision_tokens()
    batch = generator.prepare([image], [QUERY])
    with torch.inference_mode():  # what the model actually puts in place of the one placeholder
        features = generator.model.encode_vision(batch["pixel_values"], batch["geometries"])
        embedded = generator.model.vision_embeddings(features, batch["geometries"])
    assert vision == embedded.shape[1] - 1 > 0
    assert reply.usage.prompt_tokens == generator.prompt_tokens(conversation) + vision
    assert reply.usage.completion_tokens == OPTIONS.max_new_tokens


def test_earlier_turns_reach_the_chat_template(client, generator, image):  # noqa: F811
    history = [
        *_messages(image, "What is this?"),
        {"role": "assistant", "content": "A room."},
    ]
    reply = client.chat.completions.create(
        model=MODEL, messages=[*history, {"role": "user", "content": "And on the left?"}]
    )
    expected = generator(image, Conversation("And on the left?", (("What is this?", "A room."),)))
    assert reply.choices[0].message.content == expected


def test_a_stream_says_length_when_cut_has_no_empty_chunks_and_reports_usage(client, generator, image):  # noqa: F811
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=_messages(image),
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in with_choices[1:-1]]
    assert len(contents) > 1 and all(contents)  # several pieces, none empty
    assert "".join(contents).strip() == generator(image, QUERY, max_new_tokens=5)
    assert with_choices[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.prompt_tokens == generator.prompt_tokens(QUERY) + generator.vision_tokens()


def test_stop_sequences_end_the_answer_before_them(client, generator, image):  # noqa: F811
    full = generator(image, QUERY)
    assert full.startswith("one huge")
    reply = client.chat.completions.create(model=MODEL, messages=_messages(image), stop=["huge"])
    assert reply.choices[0].message.content == "one" and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens < OPTIONS.max_new_tokens  # the generation stopped there
    chunks = list(client.chat.completions.create(model=MODEL, messages=_messages(image), stop="hug", stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "one" and chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
    ],
)
def test_parameters_the_server_cannot_honour_are_400_by_name(client, image, extra, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=_messages(image), **extra)
    assert refused.value.body["param"] == param


def test_unknown_routes_and_methods_are_errors_in_the_openai_shape(base):
    missing = httpx.get(f"{base}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["message"].startswith("GET /v1/nothing")
    wrong = httpx.get(f"{base}/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
