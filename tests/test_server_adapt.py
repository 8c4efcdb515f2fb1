"""The HTTP server on an adapted off-the-shelf VLM (a tiny random Qwen2.5-VL): the server depends only on
the generator protocol, so ``AdaptGenerator`` serves like ``PanoramaGenerator``."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")

from fastapi.testclient import TestClient

from cora.adapt.generator import AdaptGenerator
from cora.inference.server import create_app

ROOT = Path(__file__).resolve().parents[1]
QUERY = "Where is the red cube?"


@pytest.fixture(scope="module")
def adapt_generator() -> AdaptGenerator:
    from cora.adapt.runtime import build_adapter
    from cora.config import load_config

    cfg = load_config(ROOT / "configs" / "adapt-qwen2_5_vl-tiny.yaml")
    cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"max_new_tokens": 3})})
    return AdaptGenerator.from_model(build_adapter(cfg), cfg)


@pytest.fixture(scope="module")
def pano_png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("pano") / "pano.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(path)
    return path


def test_an_adapted_generator_serves_health_answers_and_chat(adapt_generator, pano_png):
    client = TestClient(create_app(adapt_generator, model_name="adapted"))
    health = client.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["model"] == "adapted" and body["decoding"]["max_new_tokens"] == 3
    assert body["views"] == 9 and body["view_kinds"] == ["global", "tile"] and body["device"] == "cpu"

    expected_ids = adapt_generator.generate_ids([str(pano_png)], [QUERY])[0]
    expected = adapt_generator.decode(expected_ids)
    with open(pano_png, "rb") as handle:
        answer = client.post("/v1/answer", files={"image": ("p.png", handle, "image/png")}, data={"query": QUERY})
    assert answer.status_code == 200, answer.text
    assert answer.json()["answer"] == expected and answer.json()["tokens"] == len(expected_ids)

    url = f"data:image/png;base64,{base64.b64encode(pano_png.read_bytes()).decode()}"
    part = {"type": "image_url", "image_url": {"url": url}}
    messages = [{"role": "user", "content": [part, {"type": "text", "text": QUERY}]}]
    chat = client.post("/v1/chat/completions", json={"messages": messages})
    assert chat.status_code == 200, chat.text
    completion = chat.json()
    assert completion["choices"][0]["message"]["content"] == expected
    assert completion["usage"]["completion_tokens"] == len(expected_ids)
    usage = completion["usage"]
    # the templated text and every image token the processor expanded the placeholders into
    prepared = adapt_generator.prepare([str(pano_png)], [QUERY])
    assert usage["prompt_tokens"] == int(prepared.inputs["attention_mask"][0].sum())
    assert usage["prompt_tokens"] > adapt_generator.prompt_tokens(QUERY) > 9  # one placeholder a view as written
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_adapted_generator_keeps_the_protocol(adapt_generator, pano_png, tmp_path):
    from cora.evaluation.runner import predict
    from cora.evaluation.samples import EvalSample
    from cora.inference import AnswerGenerator

    assert isinstance(adapt_generator, AnswerGenerator)
    image = str(pano_png)
    queries = [QUERY, "What is behind you, and how far is it?"]
    batched = adapt_generator.generate_ids([image, image], queries)
    assert batched == [adapt_generator.generate_ids([image], [q])[0] for q in queries]
    assert all(len(ids) <= 3 for ids in batched)
    assert adapt_generator.generate_ids([image], [QUERY], max_new_tokens=1)[0] == batched[0][:1]
    assert "".join(adapt_generator.stream(image, QUERY)).strip() == adapt_generator(image, QUERY)
    # the evaluation takes the generator object as it is (not as a callable on one image)
    samples = [EvalSample("p.png", q, ("ref",), image) for q in queries]
    assert predict(adapt_generator, samples, tmp_path / "p.csv") == 2
