"""The server under load: dynamic batching, a bounded queue (503 + Retry-After), generation cancelled when
the client leaves, request bodies counted while they are read (chunked ones too)."""

from __future__ import annotations

import base64
import concurrent.futures
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")

import httpx
from fastapi.testclient import TestClient

from cora.inference.server import create_app
from cora.inference.server.batching import Batcher, Finished, Job
from cora.inference.server.errors import RequestError
from tests.test_generator import OPTIONS, panoramas, tiny  # noqa: F401  (fixtures)
from tests.test_server import QUERY, generator, served  # noqa: F401  (fixtures)
from tests.test_server_schemas import PNG, StandIn


class Ticking(StandIn):
    """Generates token 1 every ``tick`` seconds up to ``steps`` per row, stopping rows that are cancelled;
    records each batch's size and when it stopped."""

    def __init__(self, steps: int = 2000, tick: float = 0.005) -> None:
        super().__init__()
        self.steps, self.tick = steps, tick
        self.batches: list[int] = []
        self.stopped: list[tuple[float, int]] = []  # (time, tokens generated) per batch
        self.release = threading.Event()
        self.release.set()

    def generate_rows(self, images: Sequence[Any], queries: Sequence[str], sinks: Sequence[Any], **options: Any):
        self.release.wait()
        self.batches.append(len(images))
        rows: list[list[int]] = [[] for _ in sinks]
        for _ in range(options.get("max_new_tokens", self.steps)):
            live = [i for i, sink in enumerate(sinks) if not sink.cancelled()]
            if not live:
                break
            for i in live:
                rows[i].append(1)
                sinks[i].token(1)
            time.sleep(self.tick)
        self.stopped.append((time.monotonic(), max(len(row) for row in rows)))
        return rows

    def decode(self, ids: Sequence[int]) -> str:
        return "a" * len(ids)


def _job(options: dict[str, Any] | None = None) -> tuple[Job, list[Any]]:
    got: list[Any] = []
    options = options or {}
    limit = options.get("max_new_tokens", 3)
    return Job(np.zeros((8, 16, 3), np.uint8), "q", options, got.append, lambda ids: "a" * len(ids), limit), got


def test_jobs_arriving_together_are_one_batch_and_other_options_wait_for_the_next():
    gen = Ticking(steps=3, tick=0)
    gen.release.clear()  # the worker takes the first job and waits: the rest arrive meanwhile
    batcher = Batcher(gen, max_batch=4, max_wait_ms=50, max_queue=16)
    jobs = [_job({"max_new_tokens": 3}) for _ in range(5)] + [_job({"max_new_tokens": 2})]
    batcher.submit(jobs[0][0])
    time.sleep(0.2)  # the first batch is collected (alone) and blocked in the model
    for job, _ in jobs[1:]:
        batcher.submit(job)
    gen.release.set()
    for job, got in jobs:
        deadline = time.monotonic() + 10
        while not (got and isinstance(got[-1], Finished)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(got[-1], Finished) and got[-1].error is None
        assert "".join(g for g in got if isinstance(g, str)) == "a" * job.options["max_new_tokens"]
    assert gen.batches == [1, 4, 1]  # then four of one kind together, then the one with other options


def _wait_finished(got: list[Any], seconds: float = 10) -> Finished:
    deadline = time.monotonic() + seconds
    while not (got and isinstance(got[-1], Finished)) and time.monotonic() < deadline:
        time.sleep(0.002)
    return got[-1]


def test_a_lone_request_does_not_wait_for_company_but_one_after_a_shared_batch_does():
    gen = Ticking(steps=1, tick=0)
    batcher = Batcher(gen, max_batch=4, max_wait_ms=400, max_queue=16)
    job, got = _job()
    start = time.monotonic()
    batcher.submit(job)
    _wait_finished(got)
    assert time.monotonic() - start < 0.2  # not the 400 ms of max_wait
    gen.release.clear()
    pair = [_job(), _job()]
    batcher.submit(_job()[0])  # blocks the worker while the pair queues
    time.sleep(0.1)
    for job, _ in pair:
        batcher.submit(job)
    gen.release.set()
    _wait_finished(pair[1][1])
    job, got = _job()  # after a batch of two, the next one waits for company (up to max_wait)
    start = time.monotonic()
    batcher.submit(job)
    _wait_finished(got)
    assert 0.35 < time.monotonic() - start < 2
    assert gen.batches == [1, 1, 2, 1]


def test_a_full_queue_is_refused_at_once_with_retry_after():
    gen = Ticking(steps=2, tick=0)
    gen.release.clear()
    batcher = Batcher(gen, max_batch=1, max_wait_ms=0, max_queue=2)
    batcher.submit(_job()[0])
    time.sleep(0.1)  # taken by the worker, blocked in the model
    batcher.submit(_job()[0])
    batcher.submit(_job()[0])
    start = time.monotonic()
    with pytest.raises(RequestError) as refused:
        batcher.submit(_job()[0])
    assert time.monotonic() - start < 0.5
    assert refused.value.status == 503 and int(refused.value.headers["Retry-After"]) >= 1
    assert "2 requests are waiting" in refused.value.message
    gen.release.set()


def test_concurrent_requests_are_batched_and_answer_as_alone(generator, panoramas):  # noqa: F811
    """Eight clients at once on the tiny model: fewer model calls than requests, the same answers."""
    calls: list[int] = []
    real = generator.generate_rows

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(generator, name)

        def generate_rows(self, images, queries, sinks, **options):
            calls.append(len(images))
            return real(images, queries, sinks, **options)

    images = [Path(p).read_bytes() for p in panoramas]
    client = TestClient(create_app(Counting(), max_batch=8, max_wait_ms=200))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(client.post, "/v1/answer", files={"image": ("p.png", images[i % 3])}, data={"query": QUERY})
            for i in range(8)
        ]
        answers = [f.result().json()["answer"] for f in futures]
    assert answers == [generator(panoramas[i % 3], QUERY) for i in range(8)]
    assert sum(calls) == 8 and len(calls) < 8, calls


def test_a_cancelled_row_stops_while_the_rest_of_its_batch_goes_on(generator, panoramas):  # noqa: F811
    class Sink:
        def __init__(self, stop_after: int | None) -> None:
            self.ids: list[int] = []
            self.stop_after = stop_after

        def token(self, token_id: int) -> None:
            self.ids.append(token_id)

        def cancelled(self) -> bool:
            return self.stop_after is not None and len(self.ids) >= self.stop_after

    images, queries = panoramas[:2], [QUERY, QUERY]
    reference = generator.generate_ids(images, queries, max_new_tokens=8)
    assert len(reference[1]) == 8  # the random tiny model never stops early: a long answer to cut
    sinks = [Sink(None), Sink(2)]
    rows = generator.generate_rows(images, queries, sinks, max_new_tokens=8)
    assert rows[0] == reference[0] == sinks[0].ids
    assert sinks[1].ids == reference[1][:2] and len(rows[1]) <= 3


def _stream_and_leave(base: str, stream: bool) -> float:
    """Post a request and go away: after the first streamed line, or after 0.3 s of a non-streamed one."""
    with httpx.Client(base_url=base, timeout=httpx.Timeout(30, read=None if stream else 0.3)) as http:
        body = {"files": {"image": ("p.png", PNG)}, "data": {"query": "q", "stream": str(stream).lower()}}
        if stream:
            with http.stream("POST", "/v1/answer", **body) as response:
                next(response.iter_lines())
        else:
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/answer", **body)
        return time.monotonic()


@pytest.mark.parametrize("stream", [True, False])
def test_generation_stops_soon_after_the_client_leaves(stream):
    gen = Ticking(steps=2000, tick=0.005)  # 10 s if nobody stopped it
    with served(create_app(gen)) as base:
        left = _stream_and_leave(base, stream)
        deadline = time.monotonic() + 5
        while not gen.stopped and time.monotonic() < deadline:
            time.sleep(0.01)
    assert gen.stopped, "the generation did not stop"
    stopped, steps = gen.stopped[0]
    assert steps < 2000 and stopped - left < 1.0, (steps, stopped - left)


def _chunks(size: int, piece: int = 1 << 16) -> Iterator[bytes]:
    yield b'{"query": "q", "image": "'
    for _ in range(size // piece):
        yield b"A" * piece


def test_a_chunked_body_is_refused_while_it_is_read():
    """No Content-Length: the body is counted as it arrives and refused once over the limit; the app
    reads the limit and at most one more message (uvicorn's are up to a socket read, a few hundred kB)."""
    app = create_app(StandIn(), max_image_bytes=100_000)
    read = [0]

    async def counting(scope, receive, send):
        async def counted():
            message = await receive()
            read[0] += len(message.get("body", b""))
            return message

        await app(scope, counted, send)

    with served(counting) as base, httpx.Client(base_url=base, timeout=30) as http:
        try:
            response = http.post(
                "/v1/answer", content=_chunks(20 * 1024 * 1024), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError:  # the server may close the connection before the client finished sending
            response = None
    if response is not None:
        assert response.status_code == 413, response.text
        assert response.json()["error"]["message"].startswith("body: more than 265536 bytes is over the limit")
    assert 265536 < read[0] <= 265536 + (1 << 20), read[0]  # of the 20 MiB sent


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    client = TestClient(create_app(StandIn(), max_image_bytes=100_000))
    response = client.post("/v1/answer", content=b"x" * 300_000, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["param"] == "image"


def test_over_http_a_full_queue_is_a_503_with_retry_after_before_any_response_starts():
    """Answers, streamed answers and streamed chat completions alike: the OpenAI error shape, no 200 first."""
    gen = Ticking(steps=50, tick=0.01)
    gen.release.clear()
    client = TestClient(create_app(gen, max_batch=1, max_queue=1))
    body = {"files": {"image": ("p.png", PNG)}, "data": {"query": "q"}}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}}
    messages = [{"role": "user", "content": [image, {"type": "text", "text": "q"}]}]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/v1/answer", **body)
        time.sleep(0.3)  # running (blocked in the model)
        second = pool.submit(client.post, "/v1/answer", **body)
        time.sleep(0.3)  # waiting: the queue is full
        refused = [
            client.post("/v1/answer", **body),
            client.post("/v1/answer", files=body["files"], data={"query": "q", "stream": "true"}),
            client.post("/v1/chat/completions", json={"stream": True, "messages": messages}),
        ]
        gen.release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
    for response in refused:
        assert response.status_code == 503 and response.headers["retry-after"].isdigit(), response.text
        error = response.json()["error"]
        assert error["type"] == "server_error" and "busy" in error["message"]


def test_jobs_held_for_other_options_still_count_against_the_queue():
    gen = Ticking(steps=2, tick=0)
    gen.release.clear()
    batcher = Batcher(gen, max_batch=1, max_wait_ms=0, max_queue=3)
    batcher.submit(_job({"max_new_tokens": 1})[0])
    time.sleep(0.1)  # running (blocked)
    for n in (2, 3, 4):  # each with other options: the worker may move them to its held list
        batcher.submit(_job({"max_new_tokens": n})[0])
    with pytest.raises(RequestError) as refused:
        batcher.submit(_job({"max_new_tokens": 5})[0])
    assert refused.value.status == 503 and batcher.stats()["waiting"] == 3
    gen.release.set()


def test_a_job_finishes_once_even_when_finishing_the_batch_fails():
    gen = Ticking(steps=2, tick=0)
    batcher = Batcher(gen, max_batch=2, max_wait_ms=200, max_queue=4)
    (good, got), (broken, _) = _job({"max_new_tokens": 2}), _job({"max_new_tokens": 2})
    gen.release.clear()
    batcher.submit(_job({"max_new_tokens": 2})[0])  # a first batch the worker waits in: the pair queues
    time.sleep(0.1)

    def deliver(item: Any) -> None:
        if isinstance(item, Finished):
            raise RuntimeError("the request's loop is gone")

    broken.deliver = deliver
    batcher.submit(good)
    batcher.submit(broken)
    gen.release.set()
    assert _wait_finished(got).error is None
    time.sleep(0.3)  # the worker handled broken's failure
    assert sum(isinstance(item, Finished) for item in got) == 1  # one answer, not a second error
    again, got_again = _job({"max_new_tokens": 2})
    batcher.submit(again)
    assert _wait_finished(got_again).error is None  # and the worker goes on
