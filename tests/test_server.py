"""The HTTP server (FastAPI TestClient) on the tiny kit model of tests/test_generator.py."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("cora.model.build", reason="needs the model package (PanoramaVLM)")

from fastapi.testclient import TestClient

from cora.inference import PanoramaGenerator
from cora.inference.server import create_app
from tests.test_generator import OPTIONS, panoramas, tiny  # noqa: F401  (fixtures)

QUERY = "What is on the left?"


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free local port, in a thread; yields ``http://127.0.0.1:PORT``."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            thread.join(0.02)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def generator(tiny):  # noqa: F811
    model, cfg = tiny
    gen = PanoramaGenerator.from_model(model, cfg)
    gen.options = OPTIONS
    return gen


@pytest.fixture(scope="module")
def client(generator):
    return TestClient(create_app(generator, model_name="tiny", max_image_bytes=200_000, info={"run": "x"}))


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event."""
    out = []
    for block in text.strip().split("\n\n"):
        event, data = None, []
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((event, "\n".join(data)))
    return out


def test_health_describes_the_model(client, generator):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "tiny" and body["run"] == "x"
    assert body["views"] == len(generator.views.geometries) and body["decoding"]["max_new_tokens"] == 8
    assert body["allow_paths"] is False


def test_multipart_and_json_answers_equal_the_generator(client, generator, panoramas):  # noqa: F811
    for pano in panoramas[:2]:
        expected_ids = generator.generate_ids([pano], [QUERY])[0]
        expected = generator(pano, QUERY)
        with open(pano, "rb") as handle:
            response = client.post("/v1/answer", files={"image": ("p.png", handle, "image/png")}, data={"query": QUERY})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["answer"] == expected and body["tokens"] == len(expected_ids) and body["ms"] > 0
        as_json = client.post("/v1/answer", json={"image": _b64(pano), "query": QUERY}).json()
        assert as_json["answer"] == expected and as_json["tokens"] == body["tokens"]
    # decoding options per request
    short = client.post("/v1/answer", json={"image": _b64(panoramas[0]), "query": QUERY, "max_new_tokens": 2}).json()
    assert short["tokens"] <= 2 and short["finish_reason"] in ("stop", "length")


def test_streamed_pieces_concatenate_to_the_answer(client, generator, panoramas):  # noqa: F811
    expected = generator(panoramas[2], QUERY)
    with open(panoramas[2], "rb") as handle:
        response = client.post(
            "/v1/answer", files={"image": ("p.png", handle, "image/png")}, data={"query": QUERY, "stream": "true"}
        )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    pieces = [json.loads(d)["text"] for e, d in events if e is None]
    assert len(pieces) >= 1 and "".join(pieces).strip() == expected
    name, done = events[-1]
    assert name == "done" and json.loads(done)["answer"] == expected


def test_chat_completions_openai_format(client, generator, panoramas):  # noqa: F811
    """The wire format; tests/test_server_openai.py drives the same endpoint with the openai client."""
    expected = generator(panoramas[1], QUERY)
    url = f"data:image/png;base64,{_b64(panoramas[1])}"
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUERY}],
        },
    ]
    body = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages}).json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected}
    assert choice["finish_reason"] == "length"  # the random model never stops within 8 tokens
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(generator.formatter.encode_prompt(QUERY)) + generator.vision_tokens()
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    short = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 1}).json()
    assert short["usage"]["completion_tokens"] == 1 and short["choices"][0]["finish_reason"] == "length"

    streamed = client.post("/v1/chat/completions", json={"messages": messages, "stream": True})
    events = [d for _, d in _events(streamed.text)]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(d) for d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() == expected


def test_the_project_judge_client_and_a_leaving_stream_client_over_a_socket(generator, panoramas):  # noqa: F811
    """The judge/teacher client posts to {url}/chat/completions: over a real socket, with uvicorn."""
    import httpx

    from cora.evaluation.judge import Judge

    with served(create_app(generator)) as base:
        client = Judge(url=f"{base}/v1", model="cora", max_retries=0, max_tokens=8)
        url = f"data:image/png;base64,{_b64(panoramas[0])}"
        answer = client.complete(
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUERY}],
                }
            ]
        )
        assert answer == generator(panoramas[0], QUERY)
        # a client that leaves in the middle of a stream does not leave the model locked
        with httpx.Client(base_url=base, timeout=60) as http:
            image = Path(panoramas[1]).read_bytes()
            with http.stream(
                "POST", "/v1/answer", files={"image": ("p.png", image)}, data={"query": QUERY, "stream": "true"}
            ) as response:
                assert next(response.iter_lines()).startswith("data: ")
            again = http.post("/v1/answer", files={"image": ("p.png", image)}, data={"query": QUERY})
            assert again.json()["answer"] == generator(panoramas[1], QUERY)


@pytest.mark.parametrize(
    "request_kwargs, status, param, words",
    [
        (
            {"files": {"image": ("x.png", b"not an image at all", "image/png")}, "data": {"query": "q"}},
            422,
            "image",
            "not a readable image",
        ),
        ({"files": {"image": ("x.png", b"\x89PNG", "image/png")}}, 400, "query", "missing"),
        ({"data": {"query": "q"}, "files": {"other": ("x", b"1", "text/plain")}}, 400, "image", "missing"),
        (
            {"data": {"query": "q", "image": "abc"}, "files": {"other": ("x", b"1", "text/plain")}},
            400,
            "image",
            "a text field",
        ),
        ({"json": {"query": "q"}}, 400, "image", "missing"),
        ({"json": {"image": "!!notbase64!!", "query": "q"}}, 400, "image", "base64"),
        ({"json": {"image": "aGVsbG8=", "query": "  "}}, 400, "query", "empty"),
        ({"json": {"path": "/etc/hostname", "query": "q"}}, 403, "path", "not allowed"),
        ({"json": {"image": "aGVsbG8=", "query": "q", "max_new_tokens": 0}}, 400, "max_new_tokens", "outside"),
        ({"json": {"image": "aGVsbG8=", "query": "q", "stream": "maybe"}}, 400, "stream", "true or false"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "body", "JSON"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "content-type", "multipart"),
        (
            {"files": {"image": ("x.png", b"\x00" * 300_000, "image/png")}, "data": {"query": "q"}},
            413,
            "image",
            "over the limit",
        ),
    ],
)
def test_bad_answer_requests_are_4xx_naming_the_field(client, request_kwargs, status, param, words):
    response = client.post("/v1/answer", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"] and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body, param, words",
    [
        ({"messages": []}, "messages", "non-empty"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "no image_url"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://example.com/p.jpg"}},
                            {"type": "text", "text": "q"},
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "only data: URLs",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}],
                    }
                ]
            },
            "messages",
            "must end with a user message",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}},
                            {"type": "text", "text": "q"},
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "not a readable image",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}, "messages[0].content[0]", "audio"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}},
                            {"type": "text", "text": "q"},
                        ],
                    }
                ],
                "temperature": -1,
            },
            "temperature",
            ">= 0",
        ),
    ],
)
def test_bad_chat_requests_are_400_naming_the_field(client, body, param, words):
    response = client.post("/v1/chat/completions", json=body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"], error


def test_local_paths_only_when_allowed(generator, panoramas):  # noqa: F811
    from pathlib import Path

    client = TestClient(create_app(generator, allow_paths=Path(panoramas[0]).parent))
    body = client.post("/v1/answer", json={"path": panoramas[0], "query": QUERY}).json()
    assert body["answer"] == generator(panoramas[0], QUERY)
    missing = client.post("/v1/answer", json={"path": "/nonexistent.png", "query": QUERY})
    assert missing.status_code == 404 and "no readable image" in missing.json()["error"]["message"]


def test_serve_cli_builds_the_app_of_a_run(tiny, generator, panoramas, tmp_path, monkeypatch, capsys):  # noqa: F811
    import uvicorn

    from cora.cli.main import main

    model, _ = tiny
    saved = tmp_path / "saved"
    model.save_pretrained(str(saved))
    config = tmp_path / "serve.yaml"
    config.write_text(f"extends: {saved / 'config.yaml'}\nevaluation:\n  max_new_tokens: 8\n")
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: seen.update(app=app, host=host, port=port))
    assert main(["serve", "--checkpoint", str(saved), "--config", str(config), "--port", "8123"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    client = TestClient(seen["app"])
    health = client.get("/health").json()
    assert health["model"] == "saved" and health["run"] == "saved" and str(tmp_path) not in str(health)
    with open(panoramas[0], "rb") as handle:
        answer = client.post("/v1/answer", files={"image": ("p.png", handle)}, data={"query": QUERY}).json()
    assert answer["answer"] == generator(panoramas[0], QUERY)
    batcher = seen["app"].state.service.batcher
    assert (batcher.max_batch, batcher.max_wait, batcher.max_queue) == (8, 0.01, 64)  # the defaults
    assert main(["serve", "--checkpoint", str(saved), "--max-batch", "2", "--max-queue", "5"]) == 0
    batcher = seen["app"].state.service.batcher
    assert (batcher.max_batch, batcher.max_queue) == (2, 5)
    assert main(["serve", "--checkpoint", str(saved), "--max-batch", "0"]) == 2
    assert "max_batch 0" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


class _FailingStream:
    """The real generator, except that generation breaks after one token ("Hello") (an error mid-answer)."""

    def __init__(self, generator):
        self._generator = generator
        self.failing = True

    def __getattr__(self, name):
        return getattr(self._generator, name)

    def generate_rows(self, images, queries, sinks, **options):
        if not self.failing:
            return self._generator.generate_rows(images, queries, sinks, **options)
        hello = self._generator.tokenizer.encode("Hello", add_special_tokens=False)
        for sink in sinks:
            for token in hello:
                sink.token(token)
        raise RuntimeError("device lost")


def test_an_error_mid_stream_is_reported_in_the_stream_and_releases_the_model(generator, panoramas):  # noqa: F811
    failing = _FailingStream(generator)
    client = TestClient(create_app(failing), raise_server_exceptions=False)
    image = _b64(panoramas[0])
    events = _events(client.post("/v1/answer", json={"image": image, "query": QUERY, "stream": True}).text)
    assert events[-1][0] == "error" and "RuntimeError: device lost" in json.loads(events[-1][1])["error"]["message"]
    assert {e for e, _ in events[:-1]} == {None}
    assert "".join(json.loads(d)["text"] for _, d in events[:-1]) == "Hello"  # what came before the error
    url = f"data:image/png;base64,{image}"
    chat = client.post(
        "/v1/chat/completions",
        json={
            "stream": True,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUERY}],
                }
            ],
        },
    )
    data = [d for _, d in _events(chat.text)]
    assert "device lost" in json.loads(data[-1])["error"]["message"] and "[DONE]" not in data
    # not streamed: a 500, and the batching worker lives on to answer once the device is back
    assert client.post("/v1/answer", json={"image": image, "query": QUERY}).status_code == 500
    failing.failing = False
    assert client.post("/v1/answer", json={"image": image, "query": QUERY}).json()["answer"] == generator(
        panoramas[0], QUERY
    )


def test_the_teacher_can_use_cora_serve_as_its_endpoint(tiny_config, generator, panoramas, tmp_path):  # noqa: F811
    """The project's own server as the pseudo-labelling teacher (an OpenAI-compatible endpoint), over a real socket."""
    from cora.config.sections.teacher import TeacherConfig
    from cora.evaluation.teacher import build_teacher, clean_answer, teach

    with served(create_app(generator)) as base:
        teacher_cfg = TeacherConfig(
            url=f"{base}/v1",
            model="cora",
            crop_strategy="cubemap",
            image_size=32,
            max_tokens=6,
            max_retries=0,
            concurrency=1,
            image_format="png",
            tile_prompt=QUERY,
        )
        teacher = build_teacher(tiny_config.model_copy(update={"teacher": teacher_cfg}), cache_dir=tmp_path / "c")
        described = teacher.describe(panoramas[2])
        result = teach(teacher, panoramas[2:], tmp_path / "train.csv", "Describe the panorama.")
    assert [label for label, _ in described.notes] == ["ahead", "to the right", "behind you", "to the left"]
    # each note is the server's answer about that view (a square tile, read by CORA as if it were an ERP)
    views = teacher.views(panoramas[2])
    tiles = [(views.pixels[i].permute(1, 2, 0).numpy() * 255).round().astype("uint8") for i in range(4)]
    assert [n for _, n in described.notes] == [clean_answer(generator(t, QUERY, max_new_tokens=6)) for t in tiles]
    assert any(n for _, n in described.notes) and result["rows"] == 1 and not result["empty"]
