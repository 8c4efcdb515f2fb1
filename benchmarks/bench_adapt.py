"""Adapted-VLM benchmark: tokens per input mode, one training step, and PanoRoPE id cost.

* For every family (tiny random models, 64 px views, patch 8) and input mode: the sequence length
  and vision tokens of one sample, and the median time of one forward + backward (LM loss, and LM +
  VICReg pair-wise overlap loss where the family has a patch grid), batch 2.
* PanoRoPE ids at reference size (global + 8 tiles of 16×16 merged tokens, as Qwen2.5-VL at 448 px
  gives; batch 8): median time of ``mrope_position_ids`` and ``flat_position_ids``.

Prints a table, writes ``benchmarks/results/adapt.json`` and ends with one JSON line. CPU, shared
machine: timings are noisy.

    PYTHONPATH=src python benchmarks/bench_adapt.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cora.adapt.encode import encode_batch  # noqa: E402
from cora.adapt.families import FAMILIES, get_family  # noqa: E402
from cora.adapt.families.base import token_runs  # noqa: E402
from cora.adapt.inputs import INPUT_MODES, MULTI_IMAGE_MODES, PanoramaInputs  # noqa: E402
from cora.adapt.model import AdaptedVLM  # noqa: E402
from cora.adapt.overlap import build_overlap_loss  # noqa: E402
from cora.adapt.panorope import flat_position_ids, mrope_position_ids  # noqa: E402
from cora.config.schema import ImageProcessingConfig, LossConfig  # noqa: E402
from cora.processors.geometry import global_view, perspective_view  # noqa: E402
from cora.utils.io import atomic_write_json  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def bench_steps(repeats: int) -> list[dict]:
    erp = np.random.default_rng(0).integers(0, 255, (256, 512, 3), dtype=np.uint8)
    rows = []
    for name in sorted(FAMILIES):
        family = get_family(name)
        model, processor = family.build_tiny(64)
        model.train()
        for mode in INPUT_MODES:
            if mode in MULTI_IMAGE_MODES and not family.multi_image:
                continue
            pano = PanoramaInputs(mode, ImageProcessingConfig(image_size=64), native_height=64)(erp)
            batch = encode_batch(family, processor, [pano, pano], ["What is behind you?"] * 2, ["a red cube"] * 2)
            ids = batch.inputs["input_ids"][0]
            vision = sum(e - s for s, e in token_runs(ids, family.image_token_id(processor)))
            row = {
                "family": name,
                "mode": mode,
                "images": len(pano.images),
                "tokens": int(ids.shape[0]),
                "vision_tokens": vision,
            }
            for label, weight in (("step_ms", 0.0), ("step_overlap_ms", 0.1)):
                if weight and (mode != "anyres_e2p" or name == "blip2"):
                    continue
                adapted = AdaptedVLM(
                    family,
                    model,
                    processor,
                    overlap_loss=build_overlap_loss(LossConfig(type="vicreg_pairwise")),
                    overlap_weight=weight,
                )

                def step(adapted=adapted, batch=batch):
                    adapted.model.zero_grad(set_to_none=True)
                    adapted(batch).loss.backward()

                row[label] = median_ms(step, repeats)
            rows.append(row)
            print(json.dumps(row))
    return rows


def bench_panorope(repeats: int) -> dict:
    side, batch = 16, 8
    geoms = [global_view(448)] + [perspective_view(45 * k, 0, 90, 448, k + 1) for k in range(8)]
    text = torch.full((20,), 1)
    image = torch.full((side * side,), 9)
    row = torch.cat([text] + [torch.cat([image, torch.full((2,), 1)]) for _ in geoms] + [text])
    ids = row.repeat(batch, 1)
    mask = torch.ones_like(ids)
    grids = [(side, side)] * (len(geoms) * batch)
    out = {"tokens_per_sample": int(row.shape[0]), "batch": batch}
    out["mrope_ms"] = median_ms(lambda: mrope_position_ids(ids, mask, 9, grids, [geoms] * batch), repeats)
    out["flat_ms"] = median_ms(lambda: flat_position_ids(ids, mask, 9, grids, [geoms] * batch), repeats)
    print(json.dumps(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {
        "steps": bench_steps(args.repeats),
        "panorope": bench_panorope(args.repeats),
        "note": "tiny random models on CPU, 1 thread, shared machine: noisy",
    }
    atomic_write_json(ROOT / "benchmarks" / "results" / "adapt.json", result)
    print(json.dumps({"panorope": result["panorope"], "families": len(FAMILIES)}))


if __name__ == "__main__":
    main()
