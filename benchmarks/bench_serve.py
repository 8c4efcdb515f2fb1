"""Time ``cora serve`` against direct generator calls on the tiny kit model (HTTP + decoding overhead).

    PYTHONPATH=src python benchmarks/bench_serve.py [--n 20] [--tokens 16] [--out benchmarks/results/serve.json]

Builds the offline tiny kit and a random tiny model (mlp resampler, configs/tiny.yaml views) in a
temp folder, starts uvicorn on a free local port in a thread, and times per request: the
generator called directly, ``POST /v1/answer`` (multipart upload of a 512x256 JPEG),
``POST /v1/chat/completions`` (base64 data: URL) and the first streamed event of ``stream=true``.
Greedy decoding with ``min_new_tokens = max_new_tokens`` so every call decodes the same number of tokens.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import torch
import uvicorn

from cora.config import load_config
from cora.inference import DecodingOptions, PanoramaGenerator
from cora.inference.server import create_app
from cora.kit import build_kit
from cora.model import build_model
from cora.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def _stats(ms: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1), "n": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    kit = build_kit(cfg.kit, out_dir=tmp / "kit", seed=0)
    models = cfg.models.model_copy(
        update={"vision_name": str(kit.vision), "resampler_type": "mlp", "language_model_name": str(kit.language_model)}
    )
    cfg = cfg.model_copy(update={"models": models})
    generator = PanoramaGenerator.from_model(build_model(cfg).eval(), cfg)
    generator.options = DecodingOptions(max_new_tokens=args.tokens)
    base_kwargs = generator._kwargs  # every call decodes exactly --tokens tokens (no early stop)
    generator._kwargs = lambda overrides: {**base_kwargs(overrides), "min_new_tokens": args.tokens}
    image = (np.random.default_rng(0).random((256, 512, 3)) * 255).astype(np.uint8)
    _, jpeg = cv2.imencode(".jpg", image)
    data = jpeg.tobytes()
    query = "Describe the panorama."

    server = uvicorn.Server(uvicorn.Config(create_app(generator), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    direct, answer, chat, first_event = [], [], [], []
    chat_body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(data).decode()},
                    },
                    {"type": "text", "text": query},
                ],
            }
        ],
        "max_tokens": args.tokens,
    }
    with httpx.Client(timeout=120) as client:
        for i in range(args.n + 1):  # the first round warms up
            t = time.perf_counter()
            tokens = generator.generate_ids(
                [cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)], [query]
            )[0]
            d = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            body = client.post(f"{url}/v1/answer", files={"image": ("p.jpg", data)}, data={"query": query}).json()
            a = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            client.post(f"{url}/v1/chat/completions", json=chat_body).raise_for_status()
            c = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            with client.stream(
                "POST", f"{url}/v1/answer", files={"image": ("p.jpg", data)}, data={"query": query, "stream": "true"}
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        f = (time.perf_counter() - t) * 1000
                        break
            if i:
                direct.append(d)
                answer.append(a)
                chat.append(c)
                first_event.append(f)
            assert body["tokens"] == len(tokens) == args.tokens, (body, len(tokens))
    server.should_exit = True
    thread.join(10)
    result = {
        "benchmark": "serve",
        "model": "tiny kit (configs/tiny.yaml, mlp resampler), random weights",
        "image": "512x256 JPEG",
        "new_tokens": args.tokens,
        "torch_threads": args.threads,
        "direct_generate": _stats(direct),
        "http_answer": _stats(answer),
        "http_chat_completions": _stats(chat),
        "http_stream_first_event": _stats(first_event),
        "http_overhead_ms": round(statistics.median(answer) - statistics.median(direct), 1),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
        "note": "shared 2-core machine with other jobs running: noisy",
    }
    atomic_write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
