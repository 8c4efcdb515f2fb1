"""``cora serve`` under load and under hostile input, on loopback only.

    PYTHONPATH=src python benchmarks/bench_serve_load.py [--seconds 12] [--rounds 2] [--tokens 16]

Two servers run as separate processes (so their memory is their own and the clients do not share their
interpreter), each a tiny random model (configs/tiny.yaml as the demo trains it) built from the offline kit:

- ``max_batch 1``: one request per model call, the way the server answered before dynamic batching;
- ``max_batch 8``: dynamic batching (``max_wait_ms`` 10).

For 1 and 8 concurrent clients (each posting a 512×256 JPEG and a question, every answer exactly
``--tokens`` tokens), it reports p50/p95 latency and throughput (answers/s), interleaving the servers round
by round. Then against the batching server: the peak RSS (``VmHWM``) after each hostile input — a PNG
declaring 46000×23000 pixels, a 300 MiB chunked body, a 300,000-character question, JSON nested 100,000
deep, a stream abandoned after its first event (and how long the next request waits), three 8K
panoramas at once — and the status each got. Writes benchmarks/results/serve_load.json. Run it alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUERY = "Describe the panorama."


# -- the server process ----------------------------------------------------------------------------
def serve(port: int, max_batch: int, tokens: int) -> None:
    import torch
    import uvicorn

    from cora.config import load_config
    from cora.inference import DecodingOptions, PanoramaGenerator
    from cora.inference.server import create_app
    from cora.kit import build_kit
    from cora.model import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    kit = build_kit(cfg.kit, out_dir=Path(tempfile.mkdtemp(prefix="bench_load_")) / "kit", seed=0)
    models = cfg.models.model_copy(
        update={"vision_name": str(kit.vision), "language_model_name": str(kit.language_model)}
    )
    cfg = cfg.model_copy(update={"models": models})
    generator = PanoramaGenerator.from_model(build_model(cfg).eval(), cfg)
    generator.options = DecodingOptions(max_new_tokens=tokens)
    base_kwargs = generator._kwargs  # every answer decodes exactly max_new_tokens (no early stop)
    generator._kwargs = lambda overrides: {
        **base_kwargs(overrides),
        "min_new_tokens": base_kwargs(overrides)["max_new_tokens"],
    }
    app = create_app(generator, max_batch=max_batch, max_wait_ms=10, max_queue=64)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- the client side -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, max_batch: int, tokens: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        command = [sys.executable, __file__, "--serve", str(self.port), "--max-batch", str(max_batch)]
        self.process = subprocess.Popen([*command, "--tokens", str(tokens)], env=env)
        for _ in range(600):
            try:
                httpx.get(f"{self.url}/health", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server max_batch {max_batch} did not start")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A smooth picture (noise upscaled 16×), so its JPEG is the size of a photo's, not of noise's."""
    noise = (np.random.default_rng(seed).random((height // 16, width // 16, 3)) * 255).astype(np.uint8)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def load(url: str, clients: int, seconds: float, image: bytes) -> dict[str, float]:
    """``clients`` threads posting answers back to back for ``seconds``: latency percentiles, answers/s."""
    stop = time.monotonic() + seconds

    def client() -> list[float]:
        latencies = []
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < stop:
                start = time.perf_counter()
                response = http.post("/v1/answer", files={"image": ("p.jpg", image)}, data={"query": QUERY})
                response.raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)
        return latencies

    before = httpx.get(f"{url}/health").json()["batching"]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        all_ms = sorted(ms for part in pool.map(lambda _: client(), range(clients)) for ms in part)
    wall = time.perf_counter() - start
    after = httpx.get(f"{url}/health").json()["batching"]
    return {
        "answers": len(all_ms),
        "mean_batch_size": round(
            (after["answered"] - before["answered"]) / max(1, after["batches"] - before["batches"]), 2
        ),
        "p50_ms": round(statistics.median(all_ms), 1),
        "p95_ms": round(all_ms[min(len(all_ms) - 1, int(0.95 * len(all_ms)))], 1),
        "answers_per_s": round(len(all_ms) / wall, 2),
    }


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width × height`` pixels, with one row of data (the header is all a
    server may read before deciding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" * (1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def _chunked(total: int, piece: int = 1 << 20) -> Iterator[bytes]:
    yield b'{"query": "q", "image": "'
    for _ in range(total // piece):
        yield b"A" * piece


def hostile(server: Server, small: bytes) -> list[dict[str, object]]:
    """Each hostile input, the status it got, its time and the server's peak RSS after it."""
    big = _jpeg(8192, 4096, seed=1)
    rows: list[dict[str, object]] = []

    def record(name: str, send) -> None:
        start = time.perf_counter()
        try:
            status = send()
        except httpx.HTTPError as exc:
            status = f"connection closed ({type(exc).__name__})"
        rows.append({"input": name, "status": status, "seconds": round(time.perf_counter() - start, 2),
                     "peak_rss_mb": server.peak_rss_mb()})  # fmt: skip
        print(rows[-1])

    with httpx.Client(base_url=server.url, timeout=120) as http:
        answer = {"files": {"image": ("p.jpg", small)}, "data": {"query": QUERY}}
        record("baseline answer", lambda: http.post("/v1/answer", **answer).status_code)
        png = _png_declaring(46000, 23000)
        record(
            "PNG declaring 46000×23000",
            lambda: http.post("/v1/answer", files={"image": ("x.png", png)}, data={"query": "q"}).status_code,
        )
        record(
            "300 MiB chunked JSON body",
            lambda: (
                http.post(
                    "/v1/answer", content=_chunked(300 << 20), headers={"content-type": "application/json"}
                ).status_code
            ),
        )
        record(
            "300,000-character question",
            lambda: (
                http.post("/v1/answer", files={"image": ("p.jpg", small)}, data={"query": "x" * 300_000}).status_code
            ),
        )
        deep = b"[" * 100_000 + b"]" * 100_000
        record(
            "JSON nested 100,000 deep",
            lambda: http.post("/v1/answer", content=deep, headers={"content-type": "application/json"}).status_code,
        )

        def abandon() -> str:
            body = {
                "files": {"image": ("p.jpg", small)},
                "data": {"query": QUERY, "stream": "true", "max_new_tokens": "2048"},
            }
            with http.stream("POST", "/v1/answer", **body) as response:
                next(response.iter_lines())
            start = time.perf_counter()
            status = http.post("/v1/answer", **answer).status_code
            return f"{status}; the next request took {(time.perf_counter() - start) * 1000:.0f} ms"

        record("stream of 2048 tokens abandoned after its first event", abandon)

        def three_8k() -> str:
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                sent = [
                    pool.submit(http.post, "/v1/answer", files={"image": ("big.jpg", big)}, data={"query": QUERY})
                    for _ in range(3)
                ]
                return ",".join(str(f.result().status_code) for f in sent)

        record("three 8192×4096 JPEGs at once", three_8k)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: run a server on this port
    parser.add_argument("--max-batch", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.max_batch, args.tokens)
        return
    from cora.utils.io import atomic_write_json

    image = _jpeg(512, 256)
    servers = {1: Server(1, args.tokens), 8: Server(8, args.tokens)}
    try:
        for server in servers.values():  # warm-up
            load(server.url, 2, 2.0, image)
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for clients in (1, 8):
                for batch, server in servers.items():  # interleaved: drift hits both alike
                    row = load(server.url, clients, args.seconds, image)
                    runs.setdefault(f"max_batch {batch}, {clients} clients", []).append(row)
                    print(f"max_batch {batch}, {clients} clients: {row}")
        servers[1].stop()
        rss_before = servers[8].rss_mb()
        attacks = hostile(servers[8], image)
    finally:
        for server in servers.values():
            if server.process.poll() is None:
                server.stop()
    best = {name: max(rows, key=lambda r: r["answers_per_s"]) for name, rows in runs.items()}

    def speedup(a: str, b: str) -> float:
        return round(best[a]["answers_per_s"] / best[b]["answers_per_s"], 2)

    result = {
        "benchmark": "serve_load",
        "model": "tiny kit (configs/tiny.yaml), random weights, 1 torch thread per server",
        "request": f"POST /v1/answer, 512×256 JPEG, exactly {args.tokens} new tokens",
        "seconds_per_run": args.seconds,
        "runs": runs,
        "best": best,
        "throughput_8_vs_1_client": {
            "max_batch 1 (no batching)": speedup("max_batch 1, 8 clients", "max_batch 1, 1 clients"),
            "max_batch 8 (dynamic batching)": speedup("max_batch 8, 8 clients", "max_batch 1, 1 clients"),
        },
        "hostile_inputs": {
            "rss_mb_before": rss_before,
            "results": attacks,
            "note": "the PNG is a valid header with one row of data: the server decides from the header alone",
        },
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
    }
    atomic_write_json(args.out, result)
    print({k: result[k] for k in ("best", "throughput_8_vs_1_client")})


if __name__ == "__main__":
    main()
