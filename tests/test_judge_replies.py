"""The judge/teacher client against a server that misbehaves: bad bytes, cut bodies, answers without text."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cora.evaluation.judge import Judge, JudgeError

GOOD = json.dumps({"choices": [{"message": {"content": '{"score": 7}'}}]}).encode()
NON_UTF8 = b'{"choices": [{"message": {"content": "caf\xe9"}}]}'
NULL = json.dumps({"choices": [{"message": {"content": None}}]}).encode()
SEVEN = json.dumps({"choices": [{"message": {"content": 7}}]}).encode()


class RawServer:
    """Answers each POST with the next of ``replies``: bytes (a 200 body) or ``"cut"`` (a body shorter than its
    Content-Length, then the connection closes)."""

    def __init__(self, replies: list) -> None:
        self.replies, self.served = list(replies), 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                reply = owner.replies[min(owner.served, len(owner.replies) - 1)]
                owner.served += 1
                body = GOOD[:20] if reply == "cut" else reply
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(GOOD) if reply == "cut" else len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> RawServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _judge(url: str, tmp_path, retries: int) -> Judge:
    return Judge(url=url, model="m", max_retries=retries, retry_backoff_s=0.0, timeout_s=5.0, cache_dir=tmp_path)


def _cached(tmp_path) -> list:
    return [json.loads(p.read_text())["content"] for p in tmp_path.rglob("*.json")]


def test_bad_replies_are_retried_and_only_a_text_answer_is_cached(tmp_path):
    with RawServer([NON_UTF8, "cut", NULL, SEVEN, GOOD]) as server:
        judge = _judge(server.url, tmp_path, retries=4)
        assert judge.complete([{"role": "user", "content": "grade"}]) == '{"score": 7}'
        assert server.served == 5
    assert _cached(tmp_path) == ['{"score": 7}']


def test_a_server_that_never_answers_text_is_an_error_and_nothing_is_cached(tmp_path):
    with RawServer([NULL, SEVEN, NON_UTF8]) as server:
        judge = _judge(server.url, tmp_path, retries=2)
        with pytest.raises(JudgeError, match=r"failed after 3 attempts: .*(UnicodeDecodeError|not text)"):
            judge.complete([{"role": "user", "content": "grade"}])
    assert _cached(tmp_path) == []


def test_an_invalid_answer_in_an_old_cache_is_asked_again(tmp_path):
    with RawServer([GOOD]) as server:
        judge = _judge(server.url, tmp_path, retries=0)
        messages = [{"role": "user", "content": "grade"}]
        judge.complete(messages)
        cache = next(tmp_path.rglob("*.json"))
        cache.write_text(json.dumps({"request": {}, "content": None}))  # what an older version cached
        assert judge.complete(messages) == '{"score": 7}'
        assert server.served == 2


def test_a_failing_judge_keeps_the_metrics_already_computed(tmp_path):
    from cora.evaluation.predictions import PredictionGroup, write_predictions
    from cora.evaluation.runner import score_predictions

    predictions = tmp_path / "predictions.csv"
    write_predictions(predictions, [PredictionGroup("a.png", "q", "a tree", ("a tree",))])
    with RawServer([NULL]) as server:
        judge = _judge(server.url, tmp_path / "cache", retries=0)
        with pytest.raises(JudgeError):
            score_predictions(predictions, tmp_path / "out", metrics=["bleu4"], judge=judge)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "bleu4" in metrics and metrics["judge"] is None and "failed" in metrics["unavailable"]["judge"]
