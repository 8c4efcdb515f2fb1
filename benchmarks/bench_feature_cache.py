"""Speed-up of the frozen-tower feature cache per stage: a stage trained with ``training.feature_cache:
none`` against the same stage with ``memory``, interleaved, on the tiny config and on the small config
(the real DINOv2 ViT-S/14 + SmolLM2-135M kit).

Usage: ``python benchmarks/bench_feature_cache.py [--small KIT_DIR] [--repeats N]``; writes
benchmarks/results/feature_cache.json. Each stage runs ``steps`` steps over a dataset of ``panoramas``
panoramas, so every panorama is seen ``steps × batch / rows`` times: the first sight of each costs the
tower in both modes, the later ones only without the cache. Run it alone (timings on a shared machine
lie). The two modes end with the same weights (tests/test_feature_cache.py).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from cora.config import load_config
from cora.data.synth.dataset import write_synth_dataset
from cora.training.runner import train
from cora.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "feature_cache.json"


def _config(tmp: Path, base: str, extra: str, mode: str, stage: str, steps: int, batch: int, tag: str) -> Path:
    cfg = tmp / f"{tag}-{mode}.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / base}\n"
        f"experiment: {{name: {tag}-{mode}-{time.monotonic_ns()}, output_dir: {tmp / 'runs'}}}\n"
        f"{extra}"
        f"data: {{train: {tmp / ('synth-' + tag) / 'train.csv'}, val: null, view_cache: 64}}\n"
        f"training:\n  stages: [{stage}]\n  feature_cache: {mode}\n  progress_bar: false\n  loggers: [csv]\n"
        f"  stage_configs:\n    {stage}: {{max_steps: {steps}, batch_size: {batch}, accumulate_grad_batches: 1}}\n"
    )
    return cfg


def measure(tmp: Path, base: str, extra: str, stage: str, steps: int, batch: int, repeats: int, tag: str) -> dict:
    seconds: dict[str, list[float]] = {"none": [], "memory": []}
    for _ in range(repeats):
        for mode in ("none", "memory"):  # interleaved: drift hits both alike
            summary = train(load_config(_config(tmp, base, extra, mode, stage, steps, batch, tag))).summaries[stage]
            seconds[mode].append(summary["seconds"])
    best = {mode: min(values) for mode, values in seconds.items()}
    row = {"config": base, "stage": stage, "steps": steps, "batch_size": batch, "seconds": seconds,
           "speedup": round(best["none"] / best["memory"], 2)}  # fmt: skip
    print(f"{tag:<6} {stage:<9} none {best['none']:.1f}s  memory {best['memory']:.1f}s  ×{row['speedup']}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", default=None, help="kit folder holding real/ (cora kit build --real)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        # Few panoramas, each seen several times in a stage (as in any multi-epoch stage): tiny 40 (32 in
        # train, ~320 rows, 100 steps x 8); small 5 (4 in train, ~40 rows, 8 steps x 2).
        write_synth_dataset(tmp / "synth-tiny", n=40, seed=0, width=512, height=256)
        from cora.kit import build_kit

        kit = build_kit(load_config(ROOT / "configs" / "tiny.yaml").kit, out_dir=tmp / "kit", seed=0)
        tiny = f"models: {{vision_name: {kit.vision}, language_model_name: {kit.language_model}}}\n"
        for stage in ("resampler", "finetune"):
            rows.append(measure(tmp, "tiny.yaml", tiny, stage, 100, 8, args.repeats, "tiny"))
        if args.small:
            write_synth_dataset(tmp / "synth-small", n=5, seed=0, width=1024, height=512)
            real = Path(args.small) / "real"
            small = f"models: {{vision_name: {real / 'vision'}, language_model_name: {real / 'language_model'}}}\n"
            rows.append(measure(tmp, "small.yaml", small, "finetune", 8, 2, 1, "small"))
    atomic_write_json(RESULTS, {"machine": "2-core CPU (this project's dev machine)", "rows": rows})


if __name__ == "__main__":
    main()
