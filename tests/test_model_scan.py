"""The pure-PyTorch selective scan and Mamba block (mamba_ssm-compatible parameters)."""

from __future__ import annotations

import math

import pytest
import torch

from cora.model.resamplers.bimamba import BiMambaResampler
from cora.model.resamplers.mamba import MambaBlock
from cora.model.resamplers.scan import selective_scan


def reference_scan(u, delta, A, B, C, D):
    """Token by token: h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t ; y_t = C_t·h_t + D u_t."""
    b, L, d = u.shape
    h = torch.zeros(b, d, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, 1)


def _inputs(b, L, d, n, dt_scale=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, L, d, generator=g)
    delta = torch.rand(b, L, d, generator=g) * dt_scale
    A = -torch.rand(d, n, generator=g) * n
    B = torch.randn(b, L, n, generator=g)
    C = torch.randn(b, L, n, generator=g)
    D = torch.randn(d, generator=g)
    return u, delta, A, B, C, D


@pytest.mark.parametrize("length,chunk", [(64, None), (37, None), (37, 5), (16, 1), (16, 16), (10, 64)])
def test_chunked_scan_matches_sequential_reference(length, chunk):
    u, delta, A, B, C, D = _inputs(2, length, 6, 4)
    expected = reference_scan(*(t.double() for t in (u, delta, A, B, C, D)))
    got = selective_scan(u, delta, A, B, C, D, chunk_size=chunk)
    assert got.shape == (2, length, 6)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)


def test_scan_is_stable_with_large_steps():
    # dt·|A| up to ~100 nats per token: anything exponentiating -cumsum would overflow.
    u, delta, A, B, C, D = _inputs(1, 40, 3, 8, dt_scale=12.0, seed=1)
    got = selective_scan(u, delta, A, B, C, D, chunk_size=8)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(
        got.double(), reference_scan(*(t.double() for t in (u, delta, A, B, C, D))), rtol=1e-4, atol=1e-4
    )


def test_mamba_block_has_mamba_ssm_parameter_names_and_shapes():
    d_model, d_state, d_conv, expand = 32, 8, 4, 2
    block = MambaBlock(d_model, d_state, d_conv, expand)
    d_inner, dt_rank = expand * d_model, math.ceil(d_model / 16)
    shapes = {n: tuple(p.shape) for n, p in block.named_parameters()}
    assert shapes == {
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    # mamba_ssm's init: A = -[1..d_state] per channel, dt = softplus(bias) within [1e-3, 0.1].
    torch.testing.assert_close(-torch.exp(block.A_log[0]), -torch.arange(1, d_state + 1).float())
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6


def test_mamba_block_is_causal():
    torch.manual_seed(0)
    block = MambaBlock(16, 4).eval()
    x = torch.randn(1, 12, 16)
    y = block(x)
    x2 = x.clone()
    x2[:, 8:] = torch.randn(1, 4, 16)
    y2 = block(x2)
    torch.testing.assert_close(y[:, :8], y2[:, :8])
    assert not torch.allclose(y[:, 8:], y2[:, 8:])


def test_bimamba_sees_both_directions_and_counts_parameters():
    torch.manual_seed(0)
    model = BiMambaResampler(24, 32, depth=2, d_state=8).eval()
    x = torch.randn(2, 16, 24)
    y = model(x)
    assert y.shape == (2, 16, 32)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(model(x2)[:, 0], y[:, 0])  # the first token sees the last one
    d_inner, dt_rank, n = 64, 2, 8
    mamba = (
        32 * 2 * d_inner
        + d_inner * 4
        + d_inner
        + d_inner * (dt_rank + 2 * n)
        + dt_rank * d_inner
        + d_inner
        + d_inner * n
        + d_inner
        + d_inner * 32
    )
    expected = (24 * 32 + 32) + 2 * (2 * mamba + 2 * 32) + 2 * 32 + (32 * 32 + 32)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_bimamba_linear_direction_merge_adds_one_linear_per_block():
    mean = BiMambaResampler(24, 32, depth=2, d_state=8)
    linear = BiMambaResampler(24, 32, depth=2, d_state=8, direction_merge="linear")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(linear) - count(mean) == 2 * (64 * 32 + 32)
    assert linear(torch.randn(1, 16, 24)).shape == (1, 16, 32)
    with pytest.raises(ValueError, match="direction_merge"):
        BiMambaResampler(24, 32, direction_merge="sum")


def _scan_inputs(b: int, length: int, d: int, n: int, grad: bool = False):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(b, length, d, generator=g)
    delta = torch.rand(b, length, d, generator=g) * 0.2
    if grad:
        u.requires_grad_()
        delta.requires_grad_()
    A = -torch.rand(d, n, generator=g) * n
    B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
    return u, delta, A, B, C, torch.randn(d, generator=g)


@pytest.mark.slow
def test_the_compiled_block_scan_equals_the_loop_forward_and_backward():
    from cora.model.resamplers.scan import selective_scan_blocks, selective_scan_sequential

    inputs = _scan_inputs(2, 40, 32, 8, grad=True)  # 40 tokens: two blocks and a padded third
    want = selective_scan_sequential(*inputs)
    (gu_want, gd_want) = torch.autograd.grad(want.square().sum(), inputs[:2])
    got = selective_scan_blocks(*inputs)
    (gu, gd) = torch.autograd.grad(got.square().sum(), inputs[:2])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gu, gu_want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gd, gd_want, atol=1e-4, rtol=1e-5)


def test_the_scan_choice_follows_size_device_and_the_environment(monkeypatch):
    from cora.model.resamplers import scan as scan_module

    monkeypatch.delenv("CORA_SCAN", raising=False)
    tiny = torch.zeros(18, 64, 256)
    assert scan_module.choose_scan(tiny, torch.zeros(256, 16)) == "sequential"  # compiling would not pay
    reference = torch.empty(9, 256, 2048, device="meta")
    assert scan_module.choose_scan(reference, torch.empty(2048, 64, device="meta")) == "compiled"
    monkeypatch.setenv("CORA_SCAN", "chunked")
    assert scan_module.choose_scan(reference, torch.empty(2048, 64, device="meta")) == "chunked"
    monkeypatch.setenv("CORA_SCAN", "fast")
    with pytest.raises(ValueError, match="CORA_SCAN='fast'"):
        scan_module.choose_scan(tiny, torch.zeros(256, 16))


def test_a_failed_compilation_falls_back_to_the_loop(monkeypatch, caplog):
    from cora.model.resamplers import scan as scan_module

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setenv("CORA_SCAN", "compiled")
    monkeypatch.setattr(scan_module, "_compiled_block", broken)
    monkeypatch.setattr(scan_module, "_compile_failed", False)
    inputs = _scan_inputs(1, 20, 8, 4)
    got = scan_module.scan(*inputs)
    torch.testing.assert_close(got, scan_module.selective_scan_sequential(*inputs))
    assert "compiling the selective scan failed (no C++ compiler): using the sequential scan" in caplog.text
    assert scan_module._compile_failed


def test_running_out_of_memory_in_the_compiled_scan_is_not_a_failed_compilation(monkeypatch):
    from cora.model.resamplers import scan as scan_module

    def out_of_memory(*args):
        try:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except torch.OutOfMemoryError as exc:  # as autotuning reports it: wrapped in the compiler's error
            raise torch._dynamo.exc.BackendCompilerFailed(lambda *a: None, exc, None) from exc

    monkeypatch.setenv("CORA_SCAN", "compiled")
    monkeypatch.setattr(scan_module, "_compiled_block", out_of_memory)
    monkeypatch.setattr(scan_module, "_compile_failed", False)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed):  # the caller sees it (a smaller batch will do) ...
        scan_module.scan(*_scan_inputs(1, 20, 8, 4))
    assert not scan_module._compile_failed  # ... and the next call still compiles
