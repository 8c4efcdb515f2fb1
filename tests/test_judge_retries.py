"""The judge/teacher client's retry policy against a loopback server that answers from a script:
Retry-After, jittered back-off, fail-fast client errors, a refused connection, one reused connection."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import cora.evaluation.judge as judge_module
from cora.evaluation.judge import Judge, JudgeError
from cora.utils.http import retry_after_s

MESSAGES = [{"role": "user", "content": "grade"}]
GOOD = (200, {}, {"choices": [{"message": {"role": "assistant", "content": '{"score": 7}'}}]})


class ScriptedServer:
    """Answers each POST with the next ``(status, headers, json body)`` of ``script`` (the last one repeats);
    records when each request came and from which client port (HTTP/1.1: connections are kept alive)."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict]]) -> None:
        self.script, self.times, self.ports = list(script), [], []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.times.append(time.monotonic())
                owner.ports.append(self.client_address[1])
                status, headers, body = owner.script[min(len(owner.times), len(owner.script)) - 1]
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def served(self) -> int:
        return len(self.times)

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def sleeps(monkeypatch) -> list[float]:
    """The client's waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(judge_module, "_sleep", waited.append)
    return waited


def test_a_429_with_retry_after_is_waited_out_then_answered():
    busy = (429, {"Retry-After": "1"}, {"error": {"message": "rate limited", "type": "requests"}})
    with ScriptedServer([busy, GOOD]) as server, Judge(url=server.url, model="m", retry_backoff_s=0.0) as judge:
        start = time.monotonic()
        assert judge.complete(MESSAGES) == '{"score": 7}'
        assert time.monotonic() - start >= 0.9 and server.times[1] - server.times[0] >= 0.9
        assert server.served == 2


def test_503s_without_retry_after_back_off_exponentially_with_full_jitter(monkeypatch, sleeps):
    bounds: list[tuple[float, float]] = []
    monkeypatch.setattr(judge_module, "_jitter", lambda lo, hi: bounds.append((lo, hi)) or hi)  # the largest wait
    busy = (503, {}, {"error": "overloaded"})
    with ScriptedServer([busy, busy, GOOD]) as server:
        with Judge(url=server.url, model="m", retry_backoff_s=0.5, retry_backoff_max_s=0.75) as judge:
            assert judge.complete(MESSAGES) == '{"score": 7}'
        assert server.served == 3
    assert bounds == [(0.0, 0.5), (0.0, 0.75)]  # base * 2**n, capped
    assert sleeps == [0.5, 0.75]


def test_an_openai_shaped_400_fails_at_once_naming_url_status_and_message(sleeps):
    error = {"error": {"message": "max_tokens is too large: 99999", "type": "invalid_request_error", "code": None}}
    with ScriptedServer([(400, {}, error)]) as server, Judge(url=server.url, model="m", max_retries=5) as judge:
        with pytest.raises(JudgeError) as info:
            judge.complete(MESSAGES)
        assert server.served == 1 and sleeps == []
    message = str(info.value)
    assert f"{server.url}/chat/completions" in message
    assert "HTTP 400" in message and "max_tokens is too large: 99999" in message


def test_a_refused_connection_is_retried_max_retries_times_then_a_clear_error(sleeps):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    refused = r"teacher endpoint .*/v1/chat/completions failed after 3 attempts: Connect"
    with Judge(url=url, model="m", max_retries=2, role="teacher") as judge, pytest.raises(JudgeError, match=refused):
        judge.complete(MESSAGES)
    assert len(sleeps) == 2


def test_retry_after_is_capped_and_never_above_the_remaining_budget(sleeps):
    slow = (503, {"Retry-After": "3600"}, {"error": "maintenance"})
    with ScriptedServer([slow, GOOD]) as server:
        with Judge(url=server.url, model="m") as judge:
            assert judge.complete(MESSAGES) == '{"score": 7}'
        with Judge(url=server.url, model="m", retry_budget_s=5.0) as judge:
            server.times.clear()
            assert judge.complete(MESSAGES) == '{"score": 7}'
    assert sleeps[0] == judge_module.RETRY_AFTER_MAX_S and 4.0 < sleeps[1] <= 5.0


def test_a_spent_retry_budget_ends_the_retries(sleeps):
    with ScriptedServer([(503, {}, {"error": "overloaded"})]) as server:
        judge = Judge(url=server.url, model="m", max_retries=10, retry_backoff_s=0.0, retry_budget_s=0.0)
        with judge, pytest.raises(JudgeError, match=r"failed after 1 attempts .*budget.*: HTTP 503: overloaded"):
            judge.complete(MESSAGES)
        assert server.served == 1


def test_retry_after_accepts_seconds_an_http_date_or_milliseconds():  # (cora.utils.http, shared with data fetch)
    now = datetime.now(UTC)
    assert retry_after_s(httpx.Headers({"Retry-After": "7"})) == 7.0
    in_30s = retry_after_s(httpx.Headers({"Retry-After": format_datetime(now + timedelta(seconds=30))}))
    assert in_30s is not None and 28.0 <= in_30s <= 30.0
    assert retry_after_s(httpx.Headers({"Retry-After": format_datetime(now - timedelta(hours=1))})) == 0
    assert retry_after_s(httpx.Headers({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25
    for junk in ("soon", "nan", "-inf", ""):
        assert retry_after_s(httpx.Headers({"Retry-After": junk})) is None
    assert retry_after_s(httpx.Headers()) is None


def test_one_connection_is_reused_and_close_is_clean(tmp_path):
    with ScriptedServer([GOOD]) as server:
        judge = Judge(url=server.url, model="m", cache_dir=tmp_path)
        with judge:
            judge.complete(MESSAGES)
            judge.complete([{"role": "user", "content": "another"}])
        assert server.served == 2 and server.ports[0] == server.ports[1]
        assert judge.complete(MESSAGES) == '{"score": 7}' and server.served == 2  # cached: no client needed
        judge.close()  # closing twice, or a judge never used, is fine
        Judge(url=server.url, model="m").close()


def test_a_used_judge_still_pickles_and_compares_by_its_settings():
    with ScriptedServer([GOOD]) as server, Judge(url=server.url, model="m") as judge:
        judge.complete(MESSAGES)
        copy = pickle.loads(pickle.dumps(judge))
        assert copy == judge and copy.complete(MESSAGES) == '{"score": 7}'
        copy.close()
