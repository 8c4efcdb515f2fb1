"""DDP against FSDP (FSDP2) on 2 CPU processes (gloo): what each rank holds, what a checkpoint costs, samples/s;
and FSDP's gradient accumulation without a reduce-scatter per micro-batch against one per micro-batch.

    PYTHONPATH=src python benchmarks/bench_fsdp.py [--steps 20] [--repeats 2]

Each run trains the tiny config's ``finetune`` stage (LoRA) for ``--steps`` steps on 2 ranks; at the end of
training every rank reports the bytes of weights and of optimiser state it holds (a shard under FSDP)
and the time to gather a stage checkpoint's payload (under FSDP every rank joins the gather; under DDP rank
0 copies its replica). Two more FSDP runs accumulate 4 micro-batches per step (a quarter of the steps, the
same micro-batches), reducing gradients once per step or after every micro-batch. The runs alternate.
Writes benchmarks/results/fsdp.json. Run it alone: the two ranks take both cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from tiny_runs import run_config  # noqa: E402

from cora.config import load_config  # noqa: E402
from cora.training.callbacks import checkpoint_payload  # noqa: E402
from cora.training.runner import train  # noqa: E402
from cora.utils.io import atomic_write_json  # noqa: E402


def _local_bytes(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


class Measure(L.Callback):
    """At the end of training: bytes held by this rank, and the time to gather a checkpoint's payload."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        params = module.model.parameters()
        optimizer = trainer.optimizers[0]
        state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        t0 = time.perf_counter()
        checkpoint_payload(module, module.plan.total_steps, complete=True)
        gather = time.perf_counter() - t0
        report = {
            "weights_mb": sum(_local_bytes(p) for p in params) / 2**20,
            "optimizer_state_mb": sum(_local_bytes(v) for v in state) / 2**20,
            "checkpoint_gather_s": gather,
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def _child(config: Path, out: Path) -> None:
    if os.environ.get("BENCH_SYNC_EACH_MICRO_BATCH"):
        # The baseline of sync-free accumulation: reduce-scatter after every micro-batch (Lightning's default
        # for strategies other than DDP).
        from lightning.pytorch.strategies import ParallelStrategy

        from cora.training.sharding import FullyShardedStrategy

        FullyShardedStrategy.block_backward_sync = ParallelStrategy.block_backward_sync
    result = train(load_config(config), callbacks=[Measure(out)])
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        summary = result.summaries["finetune"]
        (out / "summary.json").write_text(json.dumps({"samples_per_s": summary["samples_per_s"]}))


def _config(tmp: Path, kit, strategy: str, steps: int, n: int, accumulate: int = 1) -> Path:
    training = {
        "strategy": strategy,
        "devices": 2,
        "accelerator": "cpu",
        "num_threads": 1,
        "stages": ["finetune"],
        "feature_cache": "none",
        "checkpoint_every_n_steps": 1000,
        "stage_configs": {"finetune": {"max_steps": steps, "batch_size": 2, "accumulate_grad_batches": accumulate}},
    }
    return run_config(tmp, kit, f"{strategy}-{n}", training, data={"num_workers": 0})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fsdp.json"))
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        _child(Path(args.child[0]), Path(args.child[1]))
        return 0

    from tiny_runs import prepare

    tmp, kit = prepare("bench_fsdp_", panoramas=40)
    # name: (strategy, micro-batches per step, steps, reduce after every micro-batch)
    variants = {
        "ddp": ("ddp", 1, args.steps, False),
        "fsdp": ("fsdp", 1, args.steps, False),
        "fsdp, accumulate 4, sync each micro-batch": ("fsdp", 4, args.steps // 4, True),
        "fsdp, accumulate 4": ("fsdp", 4, args.steps // 4, False),
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    n = 0
    for _ in range(args.repeats):
        for name, (strategy, accumulate, steps, sync_each) in variants.items():
            n += 1
            cfg, out = _config(tmp, kit, strategy, steps, n, accumulate), tmp / f"out-{strategy}-{n}"
            out.mkdir()
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MASTER_PORT=str(29600 + n), OMP_NUM_THREADS="1")
            if sync_each:
                env["BENCH_SYNC_EACH_MICRO_BATCH"] = "1"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(cfg), str(out)], env=env, capture_output=True, text=True
            )
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
            runs[name].append(json.loads((out / "summary.json").read_text()) | {"ranks": ranks})
            print(name, runs[name][-1], flush=True)

    def med(strategy: str, key: str) -> float:
        values = [r[key] if key in r else max(x[key] for x in r["ranks"]) for r in runs[strategy]]
        return round(statistics.median(values), 4)

    keys = ("samples_per_s", "weights_mb", "optimizer_state_mb", "checkpoint_gather_s")
    summary = {s: {k: med(s, k) for k in keys} for s in runs}
    summary["fsdp_over_ddp"] = {k: round(summary["fsdp"][k] / summary["ddp"][k], 3) for k in keys}
    baseline = summary["fsdp, accumulate 4, sync each micro-batch"]["samples_per_s"]
    summary["sync_free_accumulation_samples_per_s_ratio"] = round(
        summary["fsdp, accumulate 4"]["samples_per_s"] / baseline, 3
    )
    result = {
        "what": "tiny config, finetune stage (LoRA), 2 CPU processes (gloo), 1 thread each, batch 2 per rank; "
        "per rank, median over repeats (the larger rank's value for bytes and gather time); the accumulating "
        "runs take steps/4 steps of 4 micro-batches",
        "steps": args.steps,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "summary": summary,
        "runs": runs,
    }
    atomic_write_json(Path(args.out), result)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
