"""Could the demo train the reference resampler (``bimamba``) instead of ``spatial_pool``? Samples/s of the
tiny config's stages 2 and 3 with each, interleaved.

    PYTHONPATH=src python benchmarks/bench_demo_resampler.py [--steps 30] [--repeats 2]

``spatial_pool`` (2×2) hands the LLM 88 vision tokens per panorama; ``bimamba`` keeps all 352 (it resamples
along the sequence without shortening it) and runs its selective scan (the plain loop at this size, see
``cora.model.resamplers.scan``). Writes benchmarks/results/demo_resampler.json. Run it alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tiny_runs import prepare, run_config  # noqa: E402

from cora.config import load_config  # noqa: E402
from cora.training.runner import train  # noqa: E402
from cora.utils.io import atomic_write_json  # noqa: E402

RESAMPLERS = ("spatial_pool", "bimamba")
STAGES = ("resampler", "finetune")


def _config(tmp: Path, kit, stage: str, resampler: str, steps: int) -> Path:
    training = {"stages": [stage], "stage_configs": {stage: {"max_steps": steps}}}
    name = f"{stage}-{resampler}-{time.monotonic_ns()}"
    return run_config(tmp, kit, name, training, models={"resampler_type": resampler})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo_resampler.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tmp, kit = prepare("bench_demo_resampler_", panoramas=60)
    rates: dict[str, dict[str, list[float]]] = {s: {r: [] for r in RESAMPLERS} for s in STAGES}
    for _ in range(args.repeats):
        for stage in STAGES:
            for resampler in RESAMPLERS:  # interleaved: drift hits both alike
                summary = train(load_config(_config(tmp, kit, stage, resampler, args.steps))).summaries[stage]
                rates[stage][resampler].append(summary["samples_per_s"])
                print(f"{stage:10} {resampler:13} {summary['samples_per_s']:8.2f} samples/s", flush=True)
    best = {s: {r: max(v) for r, v in by.items()} for s, by in rates.items()}
    result = {
        "steps": args.steps,
        "samples_per_s": rates,
        "best": best,
        "bimamba_over_spatial_pool": {s: round(b["bimamba"] / b["spatial_pool"], 3) for s, b in best.items()},
    }
    atomic_write_json(args.out, result)
    print(result["bimamba_over_spatial_pool"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
