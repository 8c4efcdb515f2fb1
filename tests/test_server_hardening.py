"""The server against hostile input (part of it): confined local paths, an API key, a pixel limit read from
the image header before decoding, /health without paths."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra")

from fastapi.testclient import TestClient

from cora.inference.server import create_app
from tests.test_server_schemas import PNG, StandIn


@pytest.fixture
def served(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(allowed / "p.png")
    (tmp_path / "secret.png").write_bytes((allowed / "p.png").read_bytes())
    return allowed, tmp_path


def test_allow_paths_confines_requests_to_its_folder_with_one_error_for_every_refusal(served):
    allowed, root = served
    client = TestClient(create_app(StandIn(), allow_paths=allowed))
    ok = client.post("/v1/answer", json={"path": "p.png", "query": "q"})
    assert ok.status_code == 200, ok.text
    assert client.post("/v1/answer", json={"path": str(allowed / "p.png"), "query": "q"}).status_code == 200
    refusals = [str(root / "secret.png"), "../secret.png", "missing.png", "/etc/passwd", str(allowed)]
    answers = [client.post("/v1/answer", json={"path": p, "query": "q"}) for p in refusals]
    assert {(a.status_code, a.json()["error"]["message"]) for a in answers} == {
        (404, "path: no readable image of that name under the allowed folder")
    }  # the same answer whether the file exists outside the folder, is missing, or is a folder


def test_allow_paths_true_is_refused_for_being_unconfined():
    with pytest.raises(TypeError, match="the folder requests may read images from"):
        create_app(StandIn(), allow_paths=True)


def test_health_shows_no_server_paths(served):
    allowed, _ = served
    health = TestClient(create_app(StandIn(), allow_paths=allowed, info={"run": "r"})).get("/health").json()
    assert health["allow_paths"] is True and str(allowed) not in str(health)


def test_an_api_key_is_required_when_set(monkeypatch):
    client = TestClient(create_app(StandIn(), api_key="s3cret"))
    body = {"query": "q"}
    files = {"image": ("p.png", PNG)}
    refused = client.post("/v1/answer", files=files, data=body)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    wrong = client.post("/v1/answer", files=files, data=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    good = client.post("/v1/answer", files=files, data=body, headers={"Authorization": "Bearer s3cret"})
    assert good.status_code == 200
    assert client.get("/health").status_code == 200  # liveness stays open


def test_an_image_over_the_pixel_limit_is_refused_from_its_header():
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 2000)).save(buffer, format="PNG")  # small file, 8 megapixels
    client = TestClient(create_app(StandIn(), max_image_pixels=1_000_000))
    response = client.post("/v1/answer", files={"image": ("big.png", buffer.getvalue())}, data={"query": "q"})
    assert response.status_code == 413
    assert response.json()["error"]["message"].startswith("image: 4000×2000 pixels is over the limit of 1000000")


def test_deeply_nested_json_and_infinite_temperature_are_400():
    import base64

    client = TestClient(create_app(StandIn()), raise_server_exceptions=False)
    deep = "[" * 100_000 + "]" * 100_000
    nested = client.post("/v1/answer", content=deep, headers={"content-type": "application/json"})
    assert nested.status_code == 400 and nested.json()["error"]["message"] == "body: JSON nested too deeply"
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    parts = [{"type": "image_url", "image_url": url}, {"type": "text", "text": "q"}]
    body = json.dumps({"messages": [{"role": "user", "content": parts}]})[:-1] + ', "temperature": Infinity}'

    hot = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert hot.status_code == 400 and hot.json()["error"]["param"] == "temperature"


def test_a_question_over_the_token_limit_is_refused_before_the_image_is_decoded():
    stand_in = StandIn()  # its prompt_tokens is 7 for any question
    client = TestClient(create_app(stand_in, max_query_tokens=6))
    r = client.post("/v1/answer", files={"image": ("p.png", b"not even an image")}, data={"query": "q"})
    assert r.status_code == 413 and r.json()["error"]["message"] == (
        "query: the prompt is 7 tokens, over the limit of 6 tokens"
    )
    huge = client.post("/v1/answer", files={"image": ("p.png", PNG)}, data={"query": "x" * 300_000})
    assert huge.status_code == 413 and "300000 characters" in huge.json()["error"]["message"]
    assert (
        TestClient(create_app(stand_in))
        .post("/v1/answer", files={"image": ("p.png", PNG)}, data={"query": "q"})
        .status_code
        == 200
    )


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width × height`` pixels, with one row of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" * (1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def test_an_image_declaring_a_billion_pixels_is_a_413_not_pils_bomb_error():
    """46000×23000 is over PIL's own decompression-bomb limit (2 × 89.5 Mpx), which raises while the header
    is read: it must still be our 413, not a 500."""
    client = TestClient(create_app(StandIn()), raise_server_exceptions=False)
    png = _png_declaring(46000, 23000)
    response = client.post("/v1/answer", files={"image": ("bomb.png", png)}, data={"query": "q"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"].startswith("image: more than 178956970 pixels is over the limit")
