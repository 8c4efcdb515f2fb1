"""GPU check: the GPU tests, reference-size stage-2/3 training steps, the selective scan and view cutting on CUDA.

Meant for one NVIDIA H100 and under 10 minutes (``benchmarks/gpu_check.sh`` runs it under ``timeout 570``).
Nothing is downloaded: the reference model (SigLIP2 so400m/16 @ 256 px + BiMamba + Qwen3-0.6B) is built from the
architectures in ``configs/reference-arch.yaml`` with random weights, and a throw-away byte-level tokenizer is trained
in a temp folder (the model only needs its ``<|vision|>`` id; the text ids of the batch are random).

Sections (each in its own try/except and time budget; one that fails or runs out of time leaves the others running):

``tests``             ``pytest -q -m "not slow" -k "cuda or gpu" tests/``: passed / failed / skipped / errors counts.
``stage2_resampler``  ``training.stage_configs.resampler``: warm-up steps, then timed steps of forward + backward +
                      grad clipping + AdamW on a random batch of the reference shape, bf16 autocast over fp32 weights
                      (the trainer's ``bf16-mixed``); tokens/s, samples/s, peak memory, MFU. On out-of-memory the batch
                      is halved and the stage retried (the halvings are reported).
``stage3_finetune``   the same for ``training.stage_configs.finetune`` (LoRA on the LLM), on the same model.
``scan``              ``selective_scan`` (chunked), ``selective_scan_sequential`` and ``mamba_ssm``'s
                      ``selective_scan_fn`` (if importable) at the reference shape, fp32 and bf16, forward and
                      forward + backward, and their agreement with the sequential scan.
``views``             ``PanoramaViews`` on a batch of 8 random 4096×2048 panoramas: the torch path on the device vs
                      the CPU (cv2) path a data loader takes, ms per panorama.

The result is one JSON file (``benchmarks/results/gpu_check.json``; ``--out``), rewritten after every section, so a
run cut short still leaves the finished sections. Formulas (FLOPs, MFU, tolerances) are written into it.

    .venv/bin/python benchmarks/gpu_check.py                      # on the GPU machine (or benchmarks/gpu_check.sh)
    .venv/bin/python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json   # CPU, tiny sizes, 2 steps
    .venv/bin/python benchmarks/gpu_check.py --only scan,views    # a subset of the sections

``--dry-run`` (= ``--device cpu --small``) exercises every code path on the CPU at a tiny size: the model of
``configs/tiny.yaml`` built from its kit architectures, small scan shapes, 2 small panoramas, 1 warm-up + 2 steps,
and the GPU test file only (skipped without CUDA). Its numbers are CPU numbers, not GPU measurements.

The MFU peak is the H100's bf16 dense peak, 989e12 FLOP/s; set ``CORA_PEAK_FLOPS`` for another card.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout without the package installed too

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"
PEAK_ENV = "CORA_PEAK_FLOPS"
H100_BF16_DENSE_PEAK = 989e12  # H100 SXM, bf16 tensor cores, dense (no sparsity)
SECTIONS = ("tests", "stage2_resampler", "stage3_finetune", "scan", "views")
# Seconds per section; with the start-up they stay under the 570 s the shell wrapper allows. The first training
# section also builds the model (~1.07B parameters initialised on the CPU).
BUDGETS = {"tests": 90, "stage2_resampler": 170, "stage3_finetune": 110, "scan": 80, "views": 60}
STAGES = {"stage2_resampler": "resampler", "stage3_finetune": "finetune"}
SCAN_REFERENCE = (9, 256, 2048, 64)  # 9 views × 256 patches × d_inner (expand 2 × 1024) × d_state 64
SCAN_SMALL = (2, 32, 16, 4)
# |a - ref| <= atol + rtol·|ref| elementwise. bf16: the chunked and mamba_ssm scans return bf16, so one bf16 epsilon
# of relative error is the output rounding alone; fp32: both scans compute in fp32.
SCAN_TOLERANCE = {"float32": (1e-5, 1e-5), "bfloat16": (1e-3, 2.0**-7)}


class SectionTimeout(Exception):
    """A section ran past its time budget (raised from SIGALRM)."""


@dataclass
class Context:
    """What the sections share: the options, the device, and the model once built (stage 2 and 3 use one)."""

    args: argparse.Namespace
    device: torch.device
    setup: Any = None
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cora-gpu-check-")))

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


# -- running sections --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout after ``seconds`` (SIGALRM: lands between Python bytecodes, so a long CUDA call is
    interrupted when it returns to Python; a pytest subprocess is killed by subprocess.run on the way out)."""

    def _raise(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"ran past its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Budget:
    """The soft deadline of a section: loops stop timing early rather than hit the hard SIGALRM limit."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def run_section(name: str, fn: Callable[[Context, Budget], dict], ctx: Context, seconds: float) -> dict:
    """Run one section under its budget; its numbers, or the error that stopped it."""
    start = time.perf_counter()
    record: dict[str, Any] = {"budget_s": round(seconds, 1)}
    try:
        with time_limit(seconds):
            record["result"] = fn(ctx, Budget(seconds * 0.9))
        record["ok"] = True
    except Exception as exc:  # one failing section must not stop the others
        record["ok"] = False
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)[-3000:]
    record["seconds"] = round(time.perf_counter() - start, 2)
    _release_memory(ctx)
    return record


def _release_memory(ctx: Context) -> None:
    # Whatever a failed section left behind (an OOM's tensors) must not be charged to the next one.
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


def write_json(path: Path, data: dict) -> None:
    """Atomic write: a run killed by the shell's timeout leaves the previous complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def timed(fn: Callable[[], Any], ctx: Context, repeats: int, budget: Budget, warmup: int = 1) -> dict:
    """Median / min milliseconds of ``repeats`` calls after ``warmup`` calls; stops early when the budget runs low."""
    for _ in range(warmup):
        fn()
    ctx.sync()
    times: list[float] = []
    for _ in range(repeats):
        if times and budget.left() < 2 * max(times):
            break
        start = time.perf_counter()
        fn()
        ctx.sync()
        times.append(time.perf_counter() - start)
    median, fastest = statistics.median(times), min(times)
    return {"median_ms": round(median * 1e3, 3), "min_ms": round(fastest * 1e3, 3), "n": len(times)}


# -- section: tests ----------------------------------------------------------------------------------------------
def section_tests(ctx: Context, budget: Budget) -> dict:
    """The GPU-gated tests (``@pytest.mark.gpu`` / a ``cuda`` in the name), counted from pytest's JUnit XML."""
    # The dry run only collects the file that holds the CUDA test: collecting all of tests/ is heavier than needed.
    target = "tests/test_views_projection.py" if ctx.args.small else "tests/"
    junit = ctx.tmp / "tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-k", "cuda or gpu", target]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={junit}"]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(budget.left(), 5), env=_offline_env()
    )
    counts = _junit_counts(junit) if junit.is_file() else {}
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    result = {"command": " ".join(cmd[2:]), "returncode": proc.returncode, **counts, "summary": tail[-1:]}
    if proc.returncode not in (0, 5):  # 5: nothing selected
        result["output_tail"] = "\n".join(tail[-40:])
    return result


def _offline_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def _junit_counts(path: Path) -> dict:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    outcomes = {}
    for case in root.iter("testcase"):
        kind = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = kind
    return {
        "passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
        "failed": total["failures"],
        "errors": total["errors"],
        "skipped": total["skipped"],
        "tests": outcomes,
    }


# -- the model ---------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    cfg: Any  # CoraConfig
    model: Any  # PanoramaVLM on the device, fp32 weights
    views: Any  # PanoramaViews of cfg.image_processing
    build_s: float


def _tokenizer_dir(ctx: Context) -> str:
    """A small byte-level BPE with CORA's special tokens: all the model needs of a tokenizer here is the
    ``<|vision|>`` id (the batch's text ids are random), and the real Qwen3 tokenizer would need the hub."""
    from cora.kit.tokenizer import train_tokenizer

    out = ctx.tmp / "tokenizer"
    texts = ["a room with a window", "what is in this panorama?", "two chairs left of the door"] * 8
    train_tokenizer(texts, vocab_size=512).save_pretrained(out)
    return str(out)


def _overlays(ctx: Context) -> dict:
    """Config changes on top of ``--config``: the temp tokenizer; with --small the tiny kit's architectures
    (random init, like the reference) instead of the kit folders, so nothing is read from or written to .cora/."""
    models: dict[str, Any] = {"tokenizer_name": _tokenizer_dir(ctx)}
    if ctx.args.small:
        from cora.config import load_config

        kit = load_config(ctx.args.config).kit
        if kit is None:
            raise ValueError(f"{ctx.args.config}: --small needs a config with a kit: section (configs/tiny.yaml)")
        lm = {**kit.language_model.model_dump(), "vocab_size": kit.tokenizer.vocab_size}
        models |= {"vision_arch": kit.vision.model_dump(), "language_model_arch": lm}
        # The reference's resampler (tiny.yaml pools instead), smaller: the dry run trains through the same scan.
        models |= {"resampler_type": "bimamba", "resampler": {"depth": 2, "d_state": 16}}
    return {"models": models}


def get_setup(ctx: Context) -> Setup:
    """Build the model once (random weights from the architectures), shared by the training sections."""
    if ctx.setup is None:
        from cora.config import load_config
        from cora.model import build_model
        from cora.processors.views import PanoramaViews

        start = time.perf_counter()
        cfg = load_config(ctx.args.config, overlays=[(_overlays(ctx), "gpu_check")])
        if cfg.models.vision_arch is None or cfg.models.language_model_arch is None:
            raise ValueError(f"{ctx.args.config}: needs models.vision_arch and models.language_model_arch (no hub)")
        model = build_model(cfg).to(ctx.device)
        if cfg.training.gradient_checkpointing:  # as the trainer does
            model.enable_gradient_checkpointing()
        ctx.setup = Setup(cfg, model, PanoramaViews.from_config(cfg.image_processing), time.perf_counter() - start)
    return ctx.setup


def random_batch(ctx: Context, setup: Setup, batch_size: int, text_len: int) -> dict:
    """Views cut from random ERPs on the device, and random text ids with one ``<|vision|>`` each."""
    size = setup.cfg.image_processing.image_size
    width = 8 * size  # 2048×1024 for 256 px views: denser than the views, as a real panorama is
    erp = torch.rand(batch_size, 3, width // 2, width, device=ctx.device)
    pixels = setup.views(erp).pixels
    lm = setup.model.language_model
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (batch_size, text_len), device=ctx.device)
    ids[ids == lm.vision_token_id] = lm.pad_token_id
    ids[:, 1] = lm.vision_token_id  # [first token] <|vision|> text…
    labels = ids.clone()
    labels[:, :2] = -100
    return {
        "pixel_values": pixels,
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "geometries": setup.views.geometries,
    }


# -- FLOPs -------------------------------------------------------------------------------------------------------
FLOPS_FORMULA = (
    "per component c, per step: tokens_c × (2·P_c [forward] + 2·P_c if backward passes through c [input grads] + "
    "2·P_trainable_c [weight grads]) + attention_c × (1 + 2 if backward passes through c); backward passes through c "
    "when c or a component upstream of it trains. tokens: vision and resampler B·V·g² patches, vicreg projector "
    "B·tiles·rows·cols, panorama projector B·V·rows·cols, LLM B·S (S = text length − 1 + vision tokens). "
    "attention forward (PaLM convention, no causal halving): vision B·V·4·layers·(g²)²·hidden, LLM "
    "B·4·layers·S²·heads·head_dim. The scan's own element-wise FLOPs, norms and the loss are not counted."
)
FLOPS_SIMPLE_FORMULA = "6 · P_llm_total · B·S + 2 · P_vision_total · B·V·g²  (the 6N rule, frozen LLM or not)"
UPSTREAM = {
    "vision": (),
    "resampler": ("vision",),
    "vicreg_projector": ("vision", "resampler"),
    "panorama_projector": ("vision", "resampler"),
    "language_model": ("vision", "resampler", "panorama_projector"),
}


def _params(module: torch.nn.Module) -> tuple[int, int]:
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def _component_tokens(model: Any, geometries: list, batch: int, seq_len: int) -> dict[str, int]:
    from cora.model.vlm import tile_indices

    views, patches = len(geometries), model.vision.num_tokens
    rows, cols = model.resampler.out_grid(model.vision.grid, model.vision.grid)
    uses_vicreg = model.modes.uses("vicreg_projector") and tile_indices(geometries)
    return {
        "vision": batch * views * patches,
        "resampler": batch * views * patches,
        "vicreg_projector": batch * len(tile_indices(geometries)) * rows * cols if uses_vicreg else 0,
        "panorama_projector": batch * views * rows * cols if model.modes.uses_language_model else 0,
        "language_model": batch * seq_len if model.modes.uses_language_model else 0,
    }


def _attention_forward(model: Any, views: int, batch: int, seq_len: int) -> dict[str, float]:
    vision_cfg = getattr(model.vision.tower.config, "vision_config", None) or model.vision.tower.config
    patches = model.vision.num_tokens
    lm_cfg = model.language_model.model.config
    head_dim = getattr(lm_cfg, "head_dim", None) or lm_cfg.hidden_size // lm_cfg.num_attention_heads
    return {
        "vision": batch * views * 4.0 * vision_cfg.num_hidden_layers * patches**2 * vision_cfg.hidden_size,
        "language_model": batch * 4.0 * lm_cfg.num_hidden_layers * seq_len**2 * lm_cfg.num_attention_heads * head_dim,
    }


def flop_estimate(model: Any, geometries: list, batch: int, seq_len: int) -> dict:
    """Model FLOPs of one training step (see FLOPS_FORMULA), per component, and the simple 6N variant."""
    tokens = _component_tokens(model, geometries, batch, seq_len)
    attention = _attention_forward(model, len(geometries), batch, seq_len)
    params = {name: _params(getattr(model, name)) for name in UPSTREAM}
    trains = {name: params[name][1] > 0 and tokens[name] > 0 for name in UPSTREAM}
    parts = {}
    for name, (total, trainable) in params.items():
        backward = trains[name] or any(trains[u] for u in UPSTREAM[name])
        dense = tokens[name] * (2 * total + (2 * total if backward else 0) + 2 * trainable)
        parts[name] = dense + attention.get(name, 0.0) * (3 if backward else 1) * (tokens[name] > 0)
    simple = 6 * params["language_model"][0] * tokens["language_model"] + 2 * params["vision"][0] * tokens["vision"]
    return {
        "flops_per_step": sum(parts.values()),
        "flops_per_step_by_component": {k: float(f"{v:.4g}") for k, v in parts.items()},
        "flops_simple_per_step": simple,
        "params": {k: {"total": t, "trainable": tr} for k, (t, tr) in params.items()},
    }


def peak_flops() -> tuple[float, str]:
    value = os.environ.get(PEAK_ENV)
    if value:
        return float(value), f"${PEAK_ENV}"
    return H100_BF16_DENSE_PEAK, "H100 SXM bf16 dense peak (default; set $CORA_PEAK_FLOPS for another card)"


# -- sections: training steps ------------------------------------------------------------------------------------
def _optimizer(model: Any, stage_cfg: Any) -> torch.optim.Optimizer:
    """AdamW as StageModule.configure_optimizers builds it (no weight decay on 1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError("the stage has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": stage_cfg.weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=stage_cfg.lr)


def _make_step(ctx: Context, setup: Setup, stage_cfg: Any, batch: dict) -> Callable[[], float]:
    """One optimiser step of the stage: the loss StageModule.losses computes, backward, clipping, AdamW."""
    from cora.training.losses import build_loss

    model = setup.model
    overlap_loss = build_loss(stage_cfg.loss) if stage_cfg.overlap_loss_weight > 0 else None
    optimizer = _optimizer(model, stage_cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.args.dtype == "bf16")

    def step() -> float:
        with autocast:
            out = model(
                batch["pixel_values"], batch["geometries"], batch["input_ids"], batch["attention_mask"], batch["labels"]
            )
            loss = stage_cfg.lm_loss_weight * out.loss.float() if stage_cfg.lm_loss_weight > 0 else 0.0
            if overlap_loss is not None:
                loss = loss + stage_cfg.overlap_loss_weight * overlap_loss(out.overlap_features, out.tile_geometries)
        loss.backward()
        if stage_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, stage_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def _measure_stage(ctx: Context, setup: Setup, stage_cfg: Any, batch_size: int, budget: Budget) -> dict:
    args = ctx.args
    text_len = args.text_len or setup.cfg.data.max_text_length
    batch = random_batch(ctx, setup, batch_size, text_len)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    step = _make_step(ctx, setup, stage_cfg, batch)
    losses = [step() for _ in range(args.warmup)]
    ctx.sync()
    times: list[float] = []
    for _ in range(args.steps):
        if times and budget.left() < 2 * max(times):
            break  # out of time: report the steps timed so far
        start = time.perf_counter()
        losses.append(step())
        ctx.sync()
        times.append(time.perf_counter() - start)
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"non-finite loss: {losses}")
    seq_len = text_len - 1 + setup.model.num_vision_tokens(batch["geometries"])
    return _stage_numbers(ctx, setup, batch, batch_size, seq_len, times, losses)


def _stage_numbers(
    ctx: Context, setup: Setup, batch: dict, batch_size: int, seq_len: int, times: list[float], losses: list[float]
) -> dict:
    step_s = statistics.median(times)
    flops = flop_estimate(setup.model, batch["geometries"], batch_size, seq_len)
    peak, _ = peak_flops()
    return {
        "batch_size": batch_size,
        "views": len(batch["geometries"]),
        "image_size": setup.cfg.image_processing.image_size,
        "llm_seq_len": seq_len,
        "vision_tokens": setup.model.num_vision_tokens(batch["geometries"]),
        "steps_timed": len(times),
        "step_s_median": round(step_s, 4),
        "step_s_min": round(min(times), 4),
        "tokens_per_s": round(batch_size * seq_len / step_s, 1),
        "samples_per_s": round(batch_size / step_s, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 2) if ctx.cuda else None,
        "mfu": round(flops["flops_per_step"] / step_s / peak, 4),
        "mfu_simple": round(flops["flops_simple_per_step"] / step_s / peak, 4),
        "tflops_per_s": round(flops["flops_per_step"] / step_s / 1e12, 2),
        "losses": [round(x, 4) for x in losses],
        **flops,
    }


def _stage_section(section: str) -> Callable[[Context, Budget], dict]:
    def run(ctx: Context, budget: Budget) -> dict:
        from cora.model.resamplers.mamba import mamba_ssm_available

        setup = get_setup(ctx)
        stage_cfg = setup.cfg.training.stage_configs[STAGES[section]]
        rows = setup.model.set_stage(stage_cfg)
        batch_size = ctx.args.batch or stage_cfg.batch_size
        halved: list[int] = []
        while True:
            try:
                result = _measure_stage(ctx, setup, stage_cfg, batch_size, budget)
                break
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise
                halved.append(batch_size)
            # Outside the except block: the OOM's traceback (and the tensors its frames hold) is gone by now.
            setup.model.zero_grad(set_to_none=True)
            _release_memory(ctx)
            batch_size //= 2
        return {
            "stage": STAGES[section],
            "requested_batch_size": ctx.args.batch or stage_cfg.batch_size,
            "out_of_memory_at_batch_sizes": halved,
            "accumulate_grad_batches_in_training": stage_cfg.accumulate_grad_batches,
            "components": {r["component"]: r["mode"] for r in rows},
            "resampler": setup.cfg.models.resampler_type,
            "scan": "mamba_ssm" if ctx.cuda and mamba_ssm_available() else "pytorch chunked (cora scan.py)",
            "model_build_s": round(setup.build_s, 1),
            **result,
        }

    return run


# -- section: selective scan -------------------------------------------------------------------------------------
def _scan_inputs(shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """``u, delta [b, L, d]``, ``A [d, n]``, ``B, C [b, L, n]``, ``D [d]`` as MambaBlock makes them: dt log-uniform
    in [0.001, 0.1], A = −(1…n) per channel (S4D-real init), A and D in fp32."""
    b, length, d, n = shape
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, length, d, generator=g)
    delta = torch.exp(torch.rand(b, length, d, generator=g) * math.log(100.0) + math.log(1e-3))
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
    D = torch.ones(d)
    low = [t.to(device=device, dtype=dtype) for t in (u, delta)]
    bc = [t.to(device=device, dtype=dtype) for t in (B, C)]
    return [*low, A.to(device), *bc, D.to(device)]


def _scan_impls(ctx: Context) -> dict[str, Callable[..., torch.Tensor]]:
    from cora.model.resamplers.scan import selective_scan, selective_scan_sequential

    impls: dict[str, Callable[..., torch.Tensor]] = {
        "chunked": selective_scan,
        "sequential": selective_scan_sequential,
    }
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return impls
    if ctx.cuda:

        def mamba(*args: torch.Tensor) -> torch.Tensor:  # its layout is channels-first: [b, d, L] and [b, n, L]
            u, delta, A, B, C, D = args
            t = [x.transpose(1, 2).contiguous() for x in (u, delta, B, C)]
            return selective_scan_fn(t[0], t[1], A, t[2], t[3], D.float(), delta_softplus=False).transpose(1, 2)

        impls["mamba_ssm"] = mamba
    return impls


def _agreement(outputs: dict[str, torch.Tensor], dtype_name: str) -> dict:
    atol, rtol = SCAN_TOLERANCE[dtype_name]
    ref = outputs["sequential"].float()
    scale = ref.abs().max().clamp_min(1e-12)
    report = {}
    for name, out in outputs.items():
        if name == "sequential":
            continue
        diff = (out.float() - ref).abs()
        report[name] = {
            "max_abs_err": float(diff.max()),
            "max_err_rel_to_max_ref": float(diff.max() / scale),
            "agree": bool((diff <= atol + rtol * ref.abs()).all()),
        }
    return report


def _fwd_bwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad_out: torch.Tensor) -> Callable:
    def run() -> torch.Tensor:
        leaves = [t.detach().requires_grad_(i in (0, 1, 3, 4)) for i, t in enumerate(inputs)]  # u, delta, B, C
        fn(*leaves).float().backward(grad_out)
        return leaves[0].grad

    return run


def section_scan(ctx: Context, budget: Budget) -> dict:
    shape = SCAN_SMALL if ctx.args.small else SCAN_REFERENCE
    impls = _scan_impls(ctx)
    repeats = 2 if ctx.args.small else 5
    result: dict[str, Any] = {
        "shape": dict(zip(("batch", "L", "d_inner", "d_state"), shape, strict=True)),
        "implementations": list(impls),
        "tolerance": {k: {"atol": a, "rtol": r} for k, (a, r) in SCAN_TOLERANCE.items()},
        "criterion": "|a − ref| ≤ atol + rtol·|ref| elementwise on the forward output; ref = "
        "selective_scan_sequential (fp32 math on the same, already rounded, inputs)",
    }
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        inputs = _scan_inputs(shape, dtype, ctx.device)
        grad_out = torch.randn(shape[:3], generator=torch.Generator().manual_seed(1)).to(ctx.device)
        rows: dict[str, Any] = {}
        outputs, grads = {}, {}
        for impl, fn in impls.items():
            try:
                with torch.no_grad():
                    outputs[impl] = fn(*inputs)
                    rows[impl] = {"forward": timed(lambda fn=fn, x=inputs: fn(*x), ctx, repeats, budget)}
                grads[impl] = _fwd_bwd(fn, inputs, grad_out)()
                rows[impl]["forward_backward"] = timed(_fwd_bwd(fn, inputs, grad_out), ctx, repeats, budget)
            except SectionTimeout:
                raise
            except Exception as exc:  # e.g. a mamba_ssm build without this dtype: the others still run
                rows[impl] = {"error": f"{type(exc).__name__}: {exc}"}
        result[name] = {"timings": rows, "agreement": _agreement(outputs, name), "grad_u": _grad_agreement(grads)}
    return result


def _grad_agreement(grads: dict[str, torch.Tensor]) -> dict:
    """∂loss/∂u of each scan vs the sequential one (reported, not part of the criterion)."""
    ref = grads.get("sequential")
    if ref is None:
        return {}
    scale = ref.float().abs().max().clamp_min(1e-12)
    return {
        name: {"max_err_rel_to_max_ref": float((g.float() - ref.float()).abs().max() / scale)}
        for name, g in grads.items()
        if name != "sequential"
    }


# -- section: view cutting ---------------------------------------------------------------------------------------
def section_views(ctx: Context, budget: Budget) -> dict:
    """8 random 4096×2048 panoramas: the torch (grid_sample) path on the device vs the cv2 path on the CPU."""
    from cora.config import load_config
    from cora.processors.views import PanoramaViews

    image_processing = load_config(ctx.args.config).image_processing
    views = PanoramaViews.from_config(image_processing)
    n, width = (2, 512) if ctx.args.small else (8, 4096)
    erp_cpu = torch.randint(0, 256, (n, 3, width // 2, width), dtype=torch.uint8, generator=torch.Generator())
    # On CUDA the uint8 tensor is converted on the device; a CPU uint8 tensor would take the cv2 path, so the dry
    # run hands the torch path a float tensor instead.
    erp_dev = erp_cpu.to(ctx.device) if ctx.cuda else erp_cpu.float().div_(255.0)
    repeats = 2 if ctx.args.small else 5
    device_t = timed(lambda: views(erp_dev), ctx, repeats, budget)
    upload_t = timed(lambda: views(erp_cpu.to(ctx.device)), ctx, repeats, budget) if ctx.cuda else None
    cpu_t = timed(lambda: views(erp_cpu), ctx, max(1, repeats // 2), budget)
    diff = (views(erp_dev).pixels.cpu() - views(erp_cpu).pixels).abs()
    return {
        "panoramas": n,
        "erp": f"{width}x{width // 2} uint8",
        "views": len(views.geometries),
        "view_size": image_processing.image_size,
        "device_ms_per_pano": round(device_t["median_ms"] / n, 3),
        "device_with_upload_ms_per_pano": round(upload_t["median_ms"] / n, 3) if upload_t else None,
        "cpu_cv2_ms_per_pano": round(cpu_t["median_ms"] / n, 3),
        "cpu_over_device": round(cpu_t["median_ms"] / device_t["median_ms"], 2),
        "cpu_threads": torch.get_num_threads(),
        "mean_abs_diff_device_vs_cpu": float(diff.mean()),
        "timings": {"device": device_t, "device_with_upload": upload_t, "cpu_cv2": cpu_t},
    }


SECTION_FNS: dict[str, Callable[[Context, Budget], dict]] = {
    "tests": section_tests,
    "stage2_resampler": _stage_section("stage2_resampler"),
    "stage3_finetune": _stage_section("stage3_finetune"),
    "scan": section_scan,
    "views": section_views,
}


# -- main --------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON result (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="= --device cpu --small: every section at a tiny size")
    p.add_argument("--device", default=None, help="cuda (default where available) or cpu")
    p.add_argument("--small", action="store_true", help="tiny config, small shapes, 2 steps")
    p.add_argument("--config", default=None, help="default: configs/reference-arch.yaml (--small: configs/tiny.yaml)")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 5; --small 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up training steps (default 2; --small 1)")
    p.add_argument("--batch", type=int, default=None, help="panoramas per step (default: the stage's batch_size)")
    p.add_argument("--text-len", type=int, default=None, help="text tokens per sample (default data.max_text_length)")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="autocast dtype of the training steps")
    p.add_argument("--deadline", type=float, default=550.0, help="seconds for the whole run (sections are cut to fit)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (--dry-run: 1)")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.small = args.device or "cpu", True
    args.config = args.config or str(ROOT / "configs" / ("tiny.yaml" if args.small else "reference-arch.yaml"))
    args.steps = args.steps or (2 if args.small else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.small else 2)
    args.batch = args.batch or (2 if args.small else None)
    args.text_len = args.text_len or (32 if args.small else None)
    args.threads = args.threads or (1 if args.dry_run else None)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    return args


def environment(ctx: Context) -> dict:
    from cora.model.resamplers.mamba import mamba_ssm_available

    peak, source = peak_flops()
    return {
        "mode": "dry-run (CPU, tiny sizes: not GPU numbers)" if ctx.args.small and not ctx.cuda else "gpu",
        "small": ctx.args.small,
        "device": torch.cuda.get_device_name(ctx.device) if ctx.cuda else f"cpu ({platform.processor() or 'cpu'})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if ctx.cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(ctx.device).total_memory / 2**30, 1)
        if ctx.cuda
        else None,
        "mamba_ssm": mamba_ssm_available(),
        "python": platform.python_version(),
        "commit": _git_commit(),
        "config": _relative(ctx.args.config),
        "dtype": ctx.args.dtype,
        "peak_flops": peak,
        "peak_flops_source": source,
        "mfu_formula": "flops_per_step / step_s_median / peak_flops",
        "flops_formula": FLOPS_FORMULA,
        "mfu_simple_formula": f"({FLOPS_SIMPLE_FORMULA}) / step_s_median / peak_flops",
        "timing": "wall clock with torch.cuda.synchronize around each step; medians",
    }


def _relative(path: str) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub on the GPU machine: fail fast instead of hanging
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ctx = Context(args, device)
    report: dict[str, Any] = {"environment": environment(ctx), "sections": {}}
    for name in args.only.split(","):
        left = args.deadline - (time.perf_counter() - started)
        if left < 15:
            report["sections"][name] = {"ok": False, "error": f"skipped: {left:.0f} s left of --deadline"}
            continue
        report["sections"][name] = run_section(name, SECTION_FNS[name], ctx, min(BUDGETS[name], left))
        report["total_s"] = round(time.perf_counter() - started, 1)
        write_json(args.out, report)  # after every section: a run cut short keeps what it measured
        _print_line(name, report["sections"][name])
    write_json(args.out, report)
    shutil.rmtree(ctx.tmp, ignore_errors=True)  # the throw-away tokenizer and pytest's XML
    print(f"wrote {args.out}")
    return 0 if all(s.get("ok") for s in report["sections"].values()) else 1


def _print_line(name: str, record: dict) -> None:
    if not record.get("ok"):
        print(f"{name:18} FAILED after {record.get('seconds', 0)} s: {record['error']}", flush=True)
        return
    r = record["result"]
    keys = ("passed", "failed", "skipped", "errors", "batch_size", "tokens_per_s", "samples_per_s", "mfu")
    keys += ("peak_memory_gib", "device_ms_per_pano", "cpu_cv2_ms_per_pano")
    summary = ", ".join(f"{k} {r[k]}" for k in keys if k in r and not isinstance(r[k], dict))
    if name == "scan":
        summary = "; ".join(
            f"{dt} {impl} fwd {t['forward']['median_ms']} ms fwd+bwd {t['forward_backward']['median_ms']} ms"
            for dt in ("float32", "bfloat16")
            for impl, t in r[dt]["timings"].items()
            if "forward_backward" in t
        )
        agree = {f"{dt}/{k}": v["agree"] for dt in ("float32", "bfloat16") for k, v in r[dt]["agreement"].items()}
        summary += f"; agree {agree}"
    print(f"{name:18} ok in {record['seconds']} s: {summary}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
