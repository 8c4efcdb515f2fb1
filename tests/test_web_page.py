"""The page of ``cora serve`` in a real headless browser (Debian's chromium through Playwright): load a
panorama, see the model's views on the sphere, ask, watch the answer stream, stop a long one (the server
stops generating), send feedback and find it in the feedback file; ``/docs`` offline."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("playwright", reason="needs playwright (dev extra)")

from playwright.sync_api import sync_playwright

from cora.data.feedback import read_feedback
from cora.data.records import BadRowLog
from cora.inference.server import create_app
from tests.test_generator import OPTIONS, panoramas, tiny  # noqa: F401  (fixtures)
from tests.test_server import generator, served  # noqa: F401  (fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Slow:
    """The tiny generator, each token 30 ms late (answers stream in many pieces; a stop can be seen)."""

    def __init__(self, inner) -> None:
        self._generator = inner
        self.ended: list[tuple[float, int]] = []  # (when, tokens) per generation

    def __getattr__(self, name):
        return getattr(self._generator, name)

    def generate_rows(self, images, queries, sinks, **options):
        generated = [0]

        class Late:
            def __init__(self, sink) -> None:
                self.sink = sink

            def token(self, token_id: int) -> None:
                time.sleep(0.03)
                generated[0] += 1
                self.sink.token(token_id)

            def cancelled(self) -> bool:
                return self.sink.cancelled()

        try:
            return self._generator.generate_rows(images, queries, [Late(s) for s in sinks], **options)
        finally:
            self.ended.append((time.monotonic(), generated[0]))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (CI: apt-get install chromium)")
def test_the_page_shows_views_streams_answers_stops_and_keeps_feedback(generator, panoramas, tmp_path):  # noqa: F811
    slow = Slow(generator)
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(panoramas[1], examples / "room.png")
    feedback = tmp_path / "feedback" / "feedback.jsonl"
    app = create_app(slow, model_name="tiny-run", feedback_file=feedback, examples=examples)
    with served(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base)
        page.wait_for_function("document.getElementById('model').textContent.includes('tiny-run')")
        page.set_input_files("#file", panoramas[1])
        tiles = sum(1 for v in generator.view_geometries if v.kind != "global")
        page.wait_for_function(f"window.cora.tiles === {tiles}")
        page.wait_for_selector(".psv-marker", state="attached")

        # ask: the answer streams in several pieces and equals the model's own answer
        page.fill("#max-tokens", "8")
        page.fill("#question", "What is on the left?")
        page.click("#send")
        page.wait_for_function("window.cora.answers === 1", timeout=30_000)
        assert page.evaluate("window.cora.chunks") > 1
        shown = page.text_content(".turn .a").strip()
        assert shown == generator(panoramas[1], "What is on the left?", max_new_tokens=8)
        page.screenshot(path=str(tmp_path / "page.png"))  # docs/make_screenshots.py makes the README's

        # feedback: thumbs down with a correction → one row in the feedback file, in the training format
        page.click(".turn .down")
        page.fill(".turn .correction", "a green cube")
        page.click(".turn .send-feedback")
        page.wait_for_function("window.cora.feedback === 1")
        rows = [json.loads(line) for line in feedback.read_text().splitlines()]
        assert rows == [
            {
                "image": rows[0]["image"],
                "query": "What is on the left?",
                "answer": shown,
                "rating": -1,
                "correction": "a green cube",
            }
        ]
        assert (feedback.parent / rows[0]["image"]).read_bytes() == Path(panoramas[1]).read_bytes()
        records = read_feedback(feedback, "sft", BadRowLog("error"))
        assert [r.answer for r in records] == ["a green cube"]

        # a long answer, stopped after a few pieces: the server stops generating within a fraction of a second
        page.fill("#max-tokens", "2000")
        page.fill("#question", "And behind?")
        page.click("#send")
        page.wait_for_function("window.cora.chunks > 4", timeout=30_000)
        before = len(slow.ended)
        clicked = time.monotonic()
        page.click("#stop")
        deadline = time.monotonic() + 5
        while len(slow.ended) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(slow.ended) > before, "the generation did not stop"
        ended, tokens = slow.ended[-1]
        assert tokens < 2000 and ended - clicked < 1.0, (tokens, ended - clicked)
        page.wait_for_selector(".turn .a.stopped")

        # a server error is shown: a question over the prompt limit
        page.fill("#question", "x " * 40_000)
        page.click("#send")
        page.wait_for_function("document.getElementById('error').textContent.includes('413')")

        # /docs works offline (its assets come from the package)
        page.goto(f"{base}/docs")
        page.wait_for_selector(".swagger-ui .info", timeout=15_000)
        browser.close()
    assert not errors, errors


def test_examples_and_views_endpoints(generator, panoramas, tmp_path):  # noqa: F811
    from fastapi.testclient import TestClient

    examples = tmp_path / "ex"
    examples.mkdir()
    shutil.copy(panoramas[0], examples / "a.png")
    (examples / "notes.txt").write_text("not a panorama")
    client = TestClient(create_app(generator, examples=examples))
    assert client.get("/v1/examples").json()["data"] == [{"name": "a.png", "url": "/v1/examples/a.png"}]
    assert client.get("/v1/examples/a.png").content == Path(panoramas[0]).read_bytes()
    assert client.get("/v1/examples/notes.txt").status_code == 404
    assert client.get("/v1/examples/..%2Fsecret").status_code == 404
    views = client.get("/v1/views").json()["data"]
    assert len(views) == len(generator.view_geometries)
    assert all((v["outline"] is None) == (v["kind"] == "global") for v in views)
    tile = next(v for v in views if v["outline"])
    lons = [lon for lon, _ in tile["outline"]]
    assert abs((min(lons) + max(lons)) / 2 - tile["yaw_deg"]) < 1.0  # centred on its yaw
    off = TestClient(create_app(generator)).post("/v1/feedback", json={})
    assert off.status_code == 404 and "--feedback" in off.json()["error"]["message"]


def test_feedback_is_validated_and_appended_whole(generator, panoramas, tmp_path):  # noqa: F811
    import base64

    from fastapi.testclient import TestClient

    feedback = tmp_path / "fb.jsonl"
    client = TestClient(create_app(generator, feedback_file=feedback))
    url = "data:image/png;base64," + base64.b64encode(Path(panoramas[0]).read_bytes()).decode()
    bad = [
        ({"image": url, "query": "q", "answer": "a"}, "rating"),
        ({"image": url, "query": " ", "answer": "a", "rating": 1}, "query"),
        ({"image": url, "query": "q", "answer": "a", "rating": 2}, "rating"),
        ({"image": "data:image/png;base64,aGVsbG8=", "query": "q", "answer": "a", "rating": 1}, "image"),
        ({"query": "q", "answer": "a", "rating": 1}, "image"),
    ]
    for body, param in bad:
        response = client.post("/v1/feedback", json=body)
        assert 400 <= response.status_code < 500 and response.json()["error"]["param"] == param, response.text
    assert not feedback.exists()
    threads = [
        threading.Thread(
            target=client.post,
            args=("/v1/feedback",),
            kwargs={"json": {"image": url, "query": f"q{i}", "answer": "a", "rating": 1}},
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [json.loads(line) for line in feedback.read_text().splitlines()]
    assert sorted(r["query"] for r in rows) == [f"q{i}" for i in range(8)]
    assert len({r["image"] for r in rows}) == 1 and len(list((tmp_path / "images").iterdir())) == 1
    assert rows[0]["image"].endswith(".png")  # named by the format its header declares


def test_feedback_text_is_bounded(generator, tmp_path):  # noqa: F811
    from fastapi.testclient import TestClient

    client = TestClient(create_app(generator, feedback_file=tmp_path / "fb.jsonl"))
    body = {"image": "data:image/png;base64,aGVsbG8=", "query": "q" * 20_000, "answer": "a", "rating": 1}
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 413 and response.json()["error"]["param"] == "query"
