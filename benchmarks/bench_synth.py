"""Time ``cora data synth`` (write_synth_dataset) at the demo's size and at 1024x512.

Usage: ``python benchmarks/bench_synth.py [--n 300]``; writes benchmarks/results/synth.json.
Numbers depend on the machine's load (recorded with them).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from cora.data.synth import write_synth_dataset
from cora.data.synth.dataset import _default_workers
from cora.utils.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "synth.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    runs = []
    for width, height, n in ((512, 256, args.n), (1024, 512, args.n)):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = write_synth_dataset(tmp, n, seed=0, width=width, height=height)
            seconds = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        rows = sum(s["rows"] for s in summary["splits"].values())
        runs.append(
            {
                "size": f"{width}x{height}",
                "panoramas": n,
                "rows": rows,
                "seconds": round(seconds, 2),
                "ms_per_panorama": round(1000 * seconds / n, 1),
                "bytes_on_disk": size,
                "processes": _default_workers(n),
            }
        )
        print(runs[-1])
    atomic_write_json(
        RESULTS,
        {
            "benchmark": "cora data synth",
            "runs": runs,
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
    )


if __name__ == "__main__":
    main()
