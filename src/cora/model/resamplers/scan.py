"""Selective scan (Mamba's S6 recurrence) in pure PyTorch: which implementation runs, and three of them.

:func:`scan` chooses (once per device and size class, logged): a ``torch.compile``d loop over blocks of 16
tokens (:func:`selective_scan_blocks`: each block one fused kernel, no per-step temporaries; on CPU 4.0× the
plain loop forward and 7.2× forward+backward at the reference shape, ``benchmarks/results/bimamba_scan.json``;
on CUDA inductor's Triton kernels) when the work is large enough to repay the compilation (seconds to tens
of seconds on first use, then cached on disk by PyTorch); below that, the plain loop on CPU
(:func:`selective_scan_sequential`, the fastest eager form there) and the chunked scan on CUDA (few kernel
launches). With ``mamba_ssm`` installed, ``MambaBlock`` uses its CUDA kernels and does not ask.
``CORA_SCAN=compiled|chunked|sequential`` forces one. A second batch size compiles once more, with dynamic
sizes that then serve every batch size (at 9, 18, 27 sequences: ×5.9, ×5.5, ×3.5 the loop forward).
Hand-written because no installed library provides a CPU selective scan.

The chunked scan, :func:`selective_scan`:

Recurrence per channel ``d`` and state ``n``::

    h_t = a_t ⊙ h_{t-1} + b_t,   a_t = exp(dt_t·A),  b_t = dt_t·B_t·u_t,   y_t = C_t · h_t + D·u_t

The sequence is cut into ``m`` chunks of ``c`` tokens. (1) All chunks are scanned at once from
a zero state (``c`` vectorised steps, each over every chunk) to get each chunk's final state;
(2) the state entering each chunk is carried across chunks (``m`` small steps, with each
chunk's total decay ``exp(A·Σdt)``); (3) all chunks are scanned again from their true entering
states, reading ``y`` out. With ``c ≈ √L`` that is ``3√L`` loop steps (48 for 256 tokens)
instead of ``L``, each over ``m`` chunks at once, and memory stays ``O(b·m·d·n)`` (the
``[b, L, d, n]`` state sequence is never stored). Only products of decays ``a ≤ 1`` appear —
nothing is divided or exponentiated upwards — so it is exact and stable for any ``dt``.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``u, delta [b, L, d]``, ``A [d, n]``, ``B, C [b, L, n]``, ``D [d]`` → ``y [b, L, d]``.

    ``delta`` is already positive (softplus applied by the caller). Computed in float32.
    ``chunk_size`` defaults to ``ceil(sqrt(L))`` (fewest loop steps: ``chunk + L/chunk``).
    """
    dtype = u.dtype
    u, delta, B, C, A = (t.float() for t in (u, delta, B, C, A))
    batch, length, d_inner = u.shape
    n_state = A.shape[1]
    c = chunk_size or max(1, math.ceil(math.sqrt(length)))
    m = math.ceil(length / c)
    pad = m * c - length
    if pad:  # padded steps have dt = 0: no decay, no input; their outputs are cut off
        u, delta, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (u, delta, B, C))
    # Position-in-chunk first ([c, b, m, ...]) so that each step reads one contiguous slab.
    dt = delta.view(batch, m, c, d_inner).permute(2, 0, 1, 3).contiguous()
    dtu = (delta * u).view(batch, m, c, d_inner).permute(2, 0, 1, 3).contiguous()
    b_in = B.view(batch, m, c, n_state).permute(2, 0, 1, 3).unsqueeze(3).contiguous()  # [c, b, m, 1, n]
    c_out = C.view(batch, m, c, n_state).permute(2, 0, 1, 3).unsqueeze(-1).contiguous()  # [c, b, m, n, 1]

    def step(h: torch.Tensor, t: int) -> torch.Tensor:
        # [b, m, d, n]: decay and input are formed per step, never stored for the whole sequence.
        return torch.addcmul(dtu[t].unsqueeze(-1) * b_in[t], torch.exp(dt[t].unsqueeze(-1) * A), h)

    # 1. Every chunk from a zero state, all chunks at once (c steps): each chunk's final state.
    h = u.new_zeros(batch, m, d_inner, n_state)
    for t in range(c):
        h = step(h, t)
    chunk_decay = torch.exp(dt.sum(0).unsqueeze(-1) * A)  # [b, m, d, n] = product of the chunk's decays
    # 2. The state entering each chunk (m steps over [b, d, n]).
    carries = [u.new_zeros(batch, d_inner, n_state)]
    for k in range(m - 1):
        carries.append(torch.addcmul(h[:, k], chunk_decay[:, k], carries[-1]))
    # 3. Every chunk again from its true entering state (c steps), reading y out as it goes.
    h = torch.stack(carries, dim=1)
    ys = []
    for t in range(c):
        h = step(h, t)
        ys.append(torch.matmul(h, c_out[t]).squeeze(-1))  # [b, m, d]
    y = torch.stack(ys, dim=2).reshape(batch, m * c, d_inner)[:, :length]
    if D is not None:
        y = y + u[:, :length] * D.float()
    return y.to(dtype)


def selective_scan_sequential(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain token-by-token recurrence (reference for benchmarks; slow)."""
    u, delta, B, C, A = (t.float() for t in (u, delta, B, C, A))
    state = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        state = torch.exp(delta[:, t, :, None] * A) * state + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", state, C[:, t]))
    y = torch.stack(ys, dim=1)
    return y + u * D.float() if D is not None else y


# -- the compiled block scan and the choice ------------------------------------------------------------
BLOCK = 16  # tokens per compiled block: long enough to amortise the call, short enough to compile fast
#: b·L·d·n above which the CPU uses the compiled scan (the reference shape is 3·10⁸; the tiny one 5·10⁶)
COMPILE_MIN_WORK = 64 * 2**20
_compiled_block = None
_compile_failed = False
_announced: set[tuple[str, str]] = set()


def _block(h: torch.Tensor, dt: torch.Tensor, dtu: torch.Tensor, b: torch.Tensor, c: torch.Tensor, A: torch.Tensor):
    """``BLOCK`` steps from state ``h [b, d, n]``: ``dt, dtu [K, b, d]``, ``b, c [K, b, n]`` → ``(h, y [K, b, d])``."""
    ys = []
    for k in range(dt.shape[0]):
        h = torch.exp(dt[k].unsqueeze(-1) * A) * h + dtu[k].unsqueeze(-1) * b[k].unsqueeze(1)
        ys.append((h * c[k].unsqueeze(1)).sum(-1))
    return h, torch.stack(ys)


def selective_scan_blocks(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
) -> torch.Tensor:
    """The recurrence in blocks of :data:`BLOCK` steps, each block one ``torch.compile``d call (same
    arguments and result as :func:`selective_scan_sequential`)."""
    global _compiled_block
    if _compiled_block is None:
        # dynamic=None: the first shape compiles static; a second one recompiles once with dynamic sizes,
        # which then serve every batch size (dynamic batching meets many)
        _compiled_block = torch.compile(_block, dynamic=None, fullgraph=True)
    dtype, length = u.dtype, u.shape[1]
    u, delta, B, C, A = (t.float() for t in (u, delta, B, C, A))
    pad = -length % BLOCK
    if pad:  # padded steps have dt = 0: no decay, no input; their outputs are cut off
        u, delta, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (u, delta, B, C))
    dt, dtu = delta.transpose(0, 1), (delta * u).transpose(0, 1)  # [L, b, d]
    b_in, c_out = B.transpose(0, 1), C.transpose(0, 1)  # [L, b, n]
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for start in range(0, length + pad, BLOCK):
        window = slice(start, start + BLOCK)
        h, y = _compiled_block(h, dt[window], dtu[window], b_in[window], c_out[window], A)
        ys.append(y)
    y = torch.cat(ys).transpose(0, 1)[:, :length]
    if D is not None:
        y = y + u[:, :length] * D.float()
    return y.to(dtype)


def choose_scan(u: torch.Tensor, A: torch.Tensor) -> str:
    """``compiled``, ``chunked`` or ``sequential`` for inputs like ``u [b, L, d]`` (see the module docstring)."""
    forced = os.environ.get("CORA_SCAN")
    if forced:
        if forced not in ("compiled", "chunked", "sequential"):
            raise ValueError(f"CORA_SCAN={forced!r}: expected compiled, chunked or sequential")
        return forced
    work = u.shape[0] * u.shape[1] * u.shape[2] * A.shape[1]
    eager = "chunked" if u.is_cuda else "sequential"  # few kernel launches on a GPU; fewest flops on a CPU
    return "compiled" if work >= COMPILE_MIN_WORK and not _compile_failed else eager


def _out_of_memory(exc: BaseException | None) -> bool:
    """An out-of-memory error, also one that compilation or autotuning wrapped in its own exception."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The selective scan by the implementation :func:`choose_scan` picks (a failed compilation falls back
    to the plain loop, once, with a warning)."""
    global _compile_failed
    choice = choose_scan(u, A)
    if (u.device.type, choice) not in _announced:
        _announced.add((u.device.type, choice))
        logger.info("selective scan on %s: %s", u.device.type, choice)
    if choice == "compiled":
        try:
            return selective_scan_blocks(u, delta, A, B, C, D)
        except Exception as exc:  # no C++ compiler / Triton, an unsupported platform: the eager scans work
            if _out_of_memory(exc):
                raise  # the inputs are too large, not the compiler broken: the eager scans would need more memory
            _compile_failed = True
            choice = "chunked" if u.is_cuda else "sequential"
            logger.warning("compiling the selective scan failed (%s): using the %s scan", exc, choice)
    if choice == "sequential":
        return selective_scan_sequential(u, delta, A, B, C, D).to(u.dtype)
    return selective_scan(u, delta, A, B, C, D, chunk_size=chunk_size)
