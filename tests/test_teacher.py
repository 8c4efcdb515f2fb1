"""Pseudo-labelling against a local OpenAI-compatible stub that looks at each view's colours."""

from __future__ import annotations

import base64
import csv
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from cora.config.sections.teacher import TeacherConfig
from cora.evaluation.teacher import (
    Teacher,
    TeacherError,
    build_teacher,
    caption_order,
    clean_answer,
    direction,
    list_panoramas,
    teach,
    view_label,
)
from cora.processors.geometry import global_view, perspective_view
from tests.stub_openai import StubChatServer

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}


def quadrant_pano(width: int = 256, shift_deg: float = 0.0, brightness: float = 1.0) -> np.ndarray:
    """An ERP whose longitudes are coloured by quadrant: red ahead (|lon| < 45), green right, blue behind,
    yellow left; ``shift_deg`` turns the scene to the right."""
    lon = (np.arange(width) + 0.5) / width * 360.0 - 180.0 - shift_deg
    sector = np.round((lon % 360.0) / 90.0).astype(int) % 4
    palette = np.array([COLOURS[c] for c in ("red", "green", "blue", "yellow")], np.uint8)
    return np.repeat((palette[sector] * brightness).astype(np.uint8)[None], width // 2, axis=0)


def colour_name(url: str) -> str:
    data = base64.b64decode(url.split(",", 1)[1])
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    mean = rgb.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda c: float(np.sum((mean - np.array(COLOURS[c])) ** 2)))


class StubVLM(StubChatServer):
    """``/v1/chat/completions``: "a <colour> wall" for an image, "MERGED(<notes>)" for text only.
    Requests after the first ``fail_after`` get ``status``."""

    def __init__(self, fail_after: int | None = None, status: int = 500) -> None:
        super().__init__()
        self.requests: list[dict] = []
        self.served = 0
        self.fail_after = fail_after
        self.status = status
        self.lock = threading.Lock()

    def respond(self, path, body, headers):
        with self.lock:
            self.requests.append(body)
            failing = self.fail_after is not None and self.served >= self.fail_after
            if not failing:
                self.served += 1
        if failing:
            return self.status, {"error": {"message": "model overloaded"}}
        content = body["messages"][-1]["content"]
        if isinstance(content, list):
            return self.chat_reply(f"<think>hmm</think> a {colour_name(content[0]['image_url']['url'])} wall")
        return self.chat_reply(f"MERGED({content})")


EXPECTED = {
    0: "Ahead: a red wall. To the right: a green wall. Behind you: a blue wall. To the left: a yellow wall.",
    90: "Ahead: a yellow wall. To the right: a red wall. Behind you: a green wall. To the left: a blue wall.",
}


@pytest.fixture()
def panos(tmp_path):
    folder = tmp_path / "panos"
    folder.mkdir()
    for shift in (0, 90):  # darker when turned: views identical to the first panorama's would be cache hits
        pano = quadrant_pano(shift_deg=shift, brightness=1.0 - shift / 1000)
        cv2.imwrite(str(folder / f"p{shift:03d}.png"), cv2.cvtColor(pano, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not a panorama")
    return folder


def _config(tiny_config, url: str, **teacher):
    settings = {
        "url": url,
        "model": "stub-vl",
        "crop_strategy": "cubemap",
        "image_size": 32,
        "max_retries": 1,
        "retry_backoff_s": 0.0,
        "concurrency": 2,
        "image_format": "png",
        **teacher,
    }
    return tiny_config.model_copy(update={"teacher": TeacherConfig(**settings)})


def _write_config(tmp_path: Path, url: str, **extra: str) -> Path:
    root = Path(__file__).resolve().parents[1]
    lines = [
        f"extends: {root / 'configs' / 'tiny.yaml'}",
        "teacher:",
        f"  url: {url}",
        "  model: stub-vl",
        "  crop_strategy: cubemap",
        "  image_size: 32",
        "  max_retries: 1",
        "  retry_backoff_s: 0.0",
        "  concurrency: 2",
    ] + [f"  {k}: {v}" for k, v in extra.items()]
    path = tmp_path / "teach.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_directions_follow_the_geometry_convention():
    assert [direction(y) for y in (0, 45, 90, 135, 180, 225, 270, 315, 360, -45, 22.4, -180)] == [
        "ahead",
        "ahead to the right",
        "to the right",
        "behind you to the right",
        "behind you",
        "behind you to the left",
        "to the left",
        "ahead to the left",
        "ahead",
        "ahead to the left",
        "ahead",
        "behind you",
    ]
    assert view_label(global_view(64)) == "overall"
    assert view_label(perspective_view(90, 45, 90, 64)) == "to the right, above"
    assert view_label(perspective_view(0, -90, 90, 64)) == "below"
    views = [perspective_view(y, p, 90, 64, i) for i, (y, p) in enumerate([(270, 0), (0, -90), (90, 0), (0, 0)])]
    assert caption_order([*views, global_view(64)]) == [4, 3, 2, 0, 1]
    assert clean_answer("<think>x</think>\n a  red\nwall ") == "a red wall."


def test_teach_cli_writes_captions_from_the_views_and_resumes(tmp_path, panos, capsys):
    from cora.cli.main import main

    out = tmp_path / "labels" / "train.csv"
    with StubVLM() as stub:
        argv = ["teach", "--config", str(_write_config(tmp_path, stub.url)), "--images", str(panos), "--out", str(out)]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
            "panoramas": 2,
            "rows": 2,
            "out": str(out),
            "empty": 0,
        }
        rows = _rows(out)
        assert [r["url"] for r in rows] == [str((panos / "p000.png").resolve()), str((panos / "p090.png").resolve())]
        assert {r["query"] for r in rows} == {"Describe the panorama."}
        assert [r["annotation"] for r in rows] == [EXPECTED[0], EXPECTED[90]]
        assert len(stub.requests) == 8  # 4 cube faces x 2 panoramas
        request = stub.requests[0]
        assert request["model"] == "stub-vl" and request["messages"][0]["content"][1]["text"].startswith("This is one")
        assert request["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        # resumes from the cache: nothing asked again, same file
        first = out.read_bytes()
        assert main(argv) == 0 and len(stub.requests) == 8 and out.read_bytes() == first
        cache = out.parent / "train.teacher_cache"
        cached = [json.loads(p.read_text()) for p in cache.rglob("*.json")]
        assert len(cached) == 8 and all(len(json.dumps(c)) < 1500 for c in cached)  # no pixels in the cache
        assert cached[0]["request"]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;")


def test_an_interrupted_run_resumes_and_asks_only_for_the_rest(tiny_config, tmp_path, panos):
    out = tmp_path / "train.csv"
    images = list_panoramas(panos)
    with StubVLM(fail_after=5) as stub:
        teacher = build_teacher(_config(tiny_config, stub.url), cache_dir=tmp_path / "cache")
        with pytest.raises(TeacherError) as info:
            teach(teacher, images, out, "Describe the panorama.")
        message = str(info.value)
        assert "p090.png: view" in message and "teacher endpoint" in message and "HTTP 500" in message
        assert "model overloaded" in message and "after 2 attempts" in message
        assert not out.exists()  # written only when complete
        stub.fail_after, asked = None, len(stub.requests)  # the endpoint recovers (same URL: same cache keys)
        teacher = build_teacher(_config(tiny_config, stub.url), cache_dir=tmp_path / "cache")
        assert teach(teacher, images, out, "q")["rows"] == 2
        assert len(stub.requests) - asked == 3  # 8 views, 5 answered before the failure
    rows = _rows(out)  # panoramas inside the CSV's folder are named relative to it; the data readers take it
    assert [r["url"] for r in rows] == ["panos/p000.png", "panos/p090.png"]
    from cora.data.readers import read_records

    records, _ = read_records(out)
    assert [(r.images, r.answer) for r in records] == [((str(p),), EXPECTED[i]) for i, p in zip((0, 90), images)]
    assert [r["annotation"] for r in _rows(out)] == [EXPECTED[0], EXPECTED[90]]


def test_a_refused_request_fails_at_once_naming_the_endpoint(tiny_config, tmp_path, panos, capsys):
    from cora.cli.main import main

    with StubVLM(fail_after=0, status=400) as stub:
        argv = [
            "teach",
            "--config",
            str(_write_config(tmp_path, stub.url)),
            "--images",
            str(panos),
            "--out",
            str(tmp_path / "x.csv"),
        ]
        assert main(argv) == 2
        assert len(stub.requests) <= 4  # 4 views of the first panorama at most, none retried
    err = capsys.readouterr().err
    assert f"teacher endpoint {stub.url}/chat/completions refused the request: HTTP 400" in err
    assert "p000.png: view" in err and "resumes" in err


def test_csv_input_global_view_and_llm_merge(tiny_config, tmp_path, panos):
    dataset = tmp_path / "data.csv"
    dataset.write_text("url,query,annotation\npanos/p090.png,q,a\npanos/p000.png,q,b\npanos/p090.png,q2,c\n")
    images = list_panoramas(dataset)
    assert images == [str((panos / "p090.png").resolve()), str((panos / "p000.png").resolve())]
    with StubVLM() as stub:
        cfg = _config(tiny_config, stub.url, include_global=True, merge="llm")
        with build_teacher(cfg, cache_dir=tmp_path / "cache") as teacher:
            described = teacher.describe(images[1])
        assert teacher.client._client is None  # leaving the with block closed the client's connections
    labels = [label for label, _ in described.notes]
    assert labels == ["overall", "ahead", "to the right", "behind you", "to the left"]
    merge_request = stub.requests[-1]["messages"]
    assert merge_request[0]["role"] == "system" and "caption" in merge_request[0]["content"]
    assert described.caption == f"MERGED(Overall: {described.notes[0][1]} {EXPECTED[0]})."


def test_closing_the_teacher_closes_its_client_if_it_can():
    class Client:
        closed = 0

        def complete(self, messages: list) -> str:
            return "a wall"

        def close(self) -> None:
            self.closed += 1

    client = Client()
    with Teacher(client, views=lambda image: None, tile_prompt="describe") as teacher:
        assert teacher.client is client
    assert client.closed == 1
    Teacher(object(), views=lambda image: None, tile_prompt="describe").close()  # nothing to close: no error


def test_bad_inputs_are_clear_errors(tiny_config, tmp_path, capsys):
    from cora.cli.main import main

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TeacherError, match="no images"):
        list_panoramas(empty)
    with pytest.raises(TeacherError, match="no such folder"):
        list_panoramas(tmp_path / "missing")
    (empty / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    teacher = build_teacher(_config(tiny_config, "http://127.0.0.1:9/v1"), cache_dir=tmp_path / "cache")
    with pytest.raises(TeacherError, match="broken.png"):
        teacher.describe(empty / "broken.png")
    config = tmp_path / "no_teacher.yaml"
    config.write_text(f"extends: {Path(__file__).resolve().parents[1] / 'configs' / 'tiny.yaml'}\n")
    assert main(["teach", "--config", str(config), "--images", str(empty), "--out", str(tmp_path / "o.csv")]) == 2
    assert "no teacher: section" in capsys.readouterr().err
