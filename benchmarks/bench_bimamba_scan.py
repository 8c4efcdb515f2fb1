"""BiMamba selective-scan benchmark: the compiled block scan and the chunked scan vs the token-by-token loop.

Part 1 (before → after of the scan choice): at the reference shape (9 views × L 256 × d_inner 2048 ×
d_state 64) and the tiny shape, forward and forward+backward, interleaved: the plain loop (what the
chunked scan lost to), the chunked scan (the old default), the compiled block scan, and ``scan()`` (what
the model now runs: compiled at the reference size, the loop at the tiny one). The compiled scan's first
call (compilation) is timed apart.

Part 2 (as before): forward only, several shapes, chunked vs loop.

Shapes ``(b, L, d_inner, d_state)``: the tiny config's (18 views, 64 tokens, 256, 16), one
reference-size view sequence (1, 256, 2048, 64: SigLIP2 256 tokens, expand 2 × 1024, d_state
64), a mid-size batch (9, 256, 512, 16). Also the whole tiny BiMamba resampler forward. Each
row checks the chunked result against the sequential one (max abs difference).

Prints a table, writes ``benchmarks/results/bimamba_scan.json``. Medians of repeated runs on
CPU (CUDA too when available); on a shared machine they are noisy.

    PYTHONPATH=src python benchmarks/bench_bimamba_scan.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cora.model.resamplers import build_resampler  # noqa: E402
from cora.model.resamplers.scan import (  # noqa: E402
    scan,
    selective_scan,
    selective_scan_blocks,
    selective_scan_sequential,
)
from cora.utils.io import atomic_write_json  # noqa: E402

SHAPES = [
    ("tiny config, 18 views", 18, 64, 256, 16),
    ("mid batch", 9, 256, 512, 16),
    ("reference, 1 view", 1, 256, 2048, 64),
]


def _median_time(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _inputs(b, L, d, n, device):
    g = torch.Generator().manual_seed(0)
    tensors = (
        torch.randn(b, L, d, generator=g),
        torch.rand(b, L, d, generator=g) * 0.1,
        -torch.rand(d, n, generator=g) * n,
        torch.randn(b, L, n, generator=g),
        torch.randn(b, L, n, generator=g),
        torch.randn(d, generator=g),
    )
    return [t.to(device) for t in tensors]


CHOICE_SHAPES = [("reference, 9 views", 9, 256, 2048, 64), ("tiny config, 18 views", 18, 64, 256, 16)]


def _forward_backward(fn, inputs):
    u, delta = (t.detach().clone().requires_grad_() for t in inputs[:2])
    fn(u, delta, *inputs[2:]).sum().backward()


def _choice_rows(repeats: int) -> list[dict]:
    """Interleaved medians of each implementation, forward and forward+backward, CPU."""
    rows = []
    impls = {
        "sequential": selective_scan_sequential,
        "chunked": selective_scan,
        "compiled": selective_scan_blocks,
        "scan()": scan,
    }
    for label, b, L, d, n in CHOICE_SHAPES:
        inputs = _inputs(b, L, d, n, "cpu")
        start = time.perf_counter()
        _forward_backward(selective_scan_blocks, inputs)  # compiles forward and backward for this shape
        compile_s = time.perf_counter() - start
        with torch.no_grad():
            diff = float((selective_scan_blocks(*inputs) - selective_scan_sequential(*inputs)).abs().max())
        for mode in ("forward", "forward+backward"):
            times: dict[str, list[float]] = {k: [] for k in impls}
            for _ in range(repeats):
                for name, fn in impls.items():  # interleaved: drift hits every implementation alike
                    if mode == "forward":
                        with torch.no_grad():
                            times[name].append(_median_time(partial(fn, *inputs), 1, "cpu"))
                    else:
                        times[name].append(_median_time(partial(_forward_backward, fn, inputs), 1, "cpu"))
            best = {k: statistics.median(v) for k, v in times.items()}
            row = {"shape": label, "b": b, "L": L, "d_inner": d, "d_state": n, "mode": mode, "seconds": best,
                   "vs_loop": {k: round(best["sequential"] / v, 2) for k, v in best.items()},
                   "compile_first_call_s": round(compile_s, 1), "compiled_max_abs_diff": diff}  # fmt: skip
            rows.append(row)
            print(f"{label:24} {mode:17} " + "  ".join(f"{k} x{v}" for k, v in row["vs_loop"].items()))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bimamba_scan.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    choice = _choice_rows(args.repeats)
    rows = []
    with torch.no_grad():
        for device in devices:
            for label, b, L, d, n in SHAPES:
                inputs = _inputs(b, L, d, n, device)
                chunked = selective_scan(*inputs)
                sequential = selective_scan_sequential(*inputs)
                row = {
                    "device": device,
                    "shape": label,
                    "b": b,
                    "L": L,
                    "d_inner": d,
                    "d_state": n,
                    "chunked_s": _median_time(partial(selective_scan, *inputs), args.repeats, device),
                    "sequential_s": _median_time(partial(selective_scan_sequential, *inputs), args.repeats, device),
                    "max_abs_diff": float((chunked - sequential).abs().max()),
                }
                row["speedup"] = row["sequential_s"] / row["chunked_s"]
                rows.append(row)
                print(
                    f"{device:5} {label:24} chunked {row['chunked_s'] * 1e3:9.1f} ms  sequential "
                    f"{row['sequential_s'] * 1e3:9.1f} ms  x{row['speedup']:.2f}  maxdiff {row['max_abs_diff']:.1e}"
                )
            torch.manual_seed(0)
            model = build_resampler("bimamba", 64, 128, depth=2, d_state=16).to(device).eval()
            x = torch.randn(18, 64, 64, device=device)
            rows.append(
                {
                    "device": device,
                    "shape": "tiny bimamba resampler forward (18 views, depth 2)",
                    "forward_s": _median_time(partial(model, x), args.repeats, device),
                }
            )
            print(f"{device:5} tiny bimamba forward {rows[-1]['forward_s'] * 1e3:.1f} ms")
    note = (
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, cpus {os.cpu_count()}; shared machine: timings noisy"
    )
    atomic_write_json(args.out, {"scan_choice": choice, "rows": rows, "note": note})
    return 0


if __name__ == "__main__":
    sys.exit(main())
