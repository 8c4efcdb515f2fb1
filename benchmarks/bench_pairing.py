"""Angular error of the overlap-strip pairings: how far apart, on the sphere, a strip token and the
point its twin is sampled at look (``loss.pairing: columns`` vs ``exact``).

Usage: ``python benchmarks/bench_pairing.py``; writes benchmarks/results/pairing.json. A measurement of
geometry, not of speed: the numbers do not depend on the machine.
"""

from __future__ import annotations

from pathlib import Path

from cora.config.sections.image import ImageProcessingConfig
from cora.processors.views import plan_views
from cora.training.losses.strips import pairing_error
from cora.utils.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "pairing.json"


def main() -> None:
    rows = []
    for pitch in (0.0, 30.0, 45.0):
        for grid in (8, 16):  # the tiny kit's 8×8 patch grid, the reference SigLIP2's 16×16
            cfg = ImageProcessingConfig(image_size=256, pitch_min_deg=-pitch, pitch_max_deg=pitch)
            tiles = [g for g in plan_views(cfg) if g.kind != "global"]
            for pairing in ("columns", "exact"):
                err = pairing_error(tiles, grid, grid, None, pairing)
                rows.append({"pitch_rows_deg": [-pitch, pitch] if pitch else [0.0], "grid": grid, "pairing": pairing,
                             "tiles": len(tiles), **err})  # fmt: skip
                print(f"pitch ±{pitch:>4}° grid {grid:>2} {pairing:<8} mean {err['mean_deg']:.3g}° "
                      f"max {err['max_deg']:.3g}° ({err['pairs']} pairs)")  # fmt: skip
    atomic_write_json(RESULTS, {"anyres_e2p": "FOV 90°, overlap 0.5, k = 25% of the grid", "rows": rows})


if __name__ == "__main__":
    main()
