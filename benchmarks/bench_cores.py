"""Both cores: samples/s per stage of the tiny config with the old settings (1 torch thread, data loaded in
the training process between steps) against more threads and a data-loader worker (data prepared while the
model computes), interleaved.

    PYTHONPATH=src python benchmarks/bench_cores.py [--steps 60] [--repeats 2]

Each setting trains each of the stages ``vision``, ``resampler``, ``finetune`` for ``--steps`` steps on a
fresh SynthPano set (200 panoramas 512×256: the view cache stays mostly cold, as in a first epoch).
Writes benchmarks/results/cores.json. Run it alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tiny_runs import prepare, run_config  # noqa: E402

from cora.config import load_config  # noqa: E402
from cora.training.runner import train  # noqa: E402
from cora.utils.io import atomic_write_json  # noqa: E402

SETTINGS = {
    "1 thread, no worker (before)": (1, 0),
    "2 threads, no worker": (2, 0),
    "1 thread, 1 worker": (1, 1),
    "2 threads, 1 worker": (2, 1),
}
STAGES = ("vision", "resampler", "finetune")


def _config(tmp: Path, kit, stage: str, threads: int, workers: int, steps: int) -> Path:
    return run_config(
        tmp,
        kit,
        f"cores-{stage}-{threads}-{workers}-{time.monotonic_ns()}",
        {
            "stages": [stage],
            "num_threads": threads,
            "feature_cache": "none",
            "stage_configs": {stage: {"max_steps": steps}},
        },
        data={"num_workers": workers},
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cores.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tmp, kit = prepare("bench_cores_", panoramas=200)
    rates: dict[str, dict[str, list[float]]] = {s: {k: [] for k in SETTINGS} for s in STAGES}
    for _ in range(args.repeats):
        for stage in STAGES:
            for name, (threads, workers) in SETTINGS.items():  # interleaved: drift hits every setting alike
                config = load_config(_config(tmp, kit, stage, threads, workers, args.steps))
                summary = train(config).summaries[stage]
                rates[stage][name].append(summary["samples_per_s"])
                print(f"{stage:10} {name:30} {summary['samples_per_s']:8.2f} samples/s", flush=True)
    best = {s: {k: max(v) for k, v in r.items()} for s, r in rates.items()}
    base = next(iter(SETTINGS))
    result = {
        "steps": args.steps,
        "samples_per_s": rates,
        "best": best,
        "vs_before": {s: {k: round(v / b[base], 2) for k, v in b.items()} for s, b in best.items()},
        "cpus": os.cpu_count(),
    }
    atomic_write_json(args.out, result)
    print(result["vs_before"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
