"""Selective scan (Mamba's S6 recurrence) in pure PyTorch: a two-level chunked scan.

Recurrence per channel ``d`` and state ``n``::

    h_t = a_t ⊙ h_{t-1} + b_t,   a_t = exp(dt_t·A),  b_t = dt_t·B_t·u_t,   y_t = C_t · h_t + D·u_t

The sequence is cut into ``m`` chunks of ``c`` tokens. (1) All chunks are scanned at once from
a zero state (``c`` vectorised steps, each over every chunk), keeping the cumulative decay;
(2) the state entering each chunk is carried across chunks (``m`` small steps); (3) each
position adds its cumulative decay times its chunk's entering state. With ``c ≈ √L`` that is
``2√L`` loop steps (32 for 256 tokens) instead of ``L``. Only products of decays ``a ≤ 1``
appear — nothing is divided or exponentiated upwards — so it is exact and stable for any ``dt``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, chunk_size: int | None = None) -> torch.Tensor:
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
    # Position-in-chunk first ([c, b, m, d, n]) so that each step reads/writes one contiguous slab.
    dt = delta.view(batch, m, c, d_inner).permute(2, 0, 1, 3).unsqueeze(-1)
    x = u.view(batch, m, c, d_inner).permute(2, 0, 1, 3).unsqueeze(-1)
    b_in = B.view(batch, m, c, n_state).permute(2, 0, 1, 3).unsqueeze(3)
    c_out = C.view(batch, m, c, n_state).permute(2, 0, 1, 3)
    decay = torch.exp(dt * A)  # [c, b, m, d, n]
    inject = dt * x * b_in
    # 1. Every chunk from a zero state, all chunks at once (c steps); y from the local state.
    cum = torch.empty_like(decay)
    y_local = u.new_empty(c, batch, m, d_inner)
    h = inject.new_zeros(batch, m, d_inner, n_state)
    a = decay.new_ones(batch, m, d_inner, n_state)
    for t in range(c):
        h = torch.addcmul(inject[t], decay[t], h)
        a = a * decay[t]
        cum[t] = a
        y_local[t] = (h * c_out[t].unsqueeze(2)).sum(-1)
        if t == c - 1:
            last = h  # [b, m, d, n]: each chunk's final local state
    # 2. The state entering each chunk (m steps over [b, d, n]).
    carries = [inject.new_zeros(batch, d_inner, n_state)]
    for k in range(m - 1):
        carries.append(torch.addcmul(last[:, k], cum[-1, :, k], carries[-1]))
    carry = torch.stack(carries, dim=1)  # [b, m, d, n]
    # 3. The carried state decays into each position: y += C_t · (cum_t ⊙ carry).
    y = y_local + ((cum * carry) * c_out.unsqueeze(3)).sum(-1)
    y = y.permute(1, 2, 0, 3).reshape(batch, m * c, d_inner)[:, :length]
    if D is not None:
        y = y + u[:, :length] * D.float()
    return y.to(dtype)


def selective_scan_sequential(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                              C: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """The plain token-by-token recurrence (reference for benchmarks; slow)."""
    u, delta, B, C, A = (t.float() for t in (u, delta, B, C, A))
    state = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        state = torch.exp(delta[:, t, :, None] * A) * state + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", state, C[:, t]))
    y = torch.stack(ys, dim=1)
    return y + u * D.float() if D is not None else y
