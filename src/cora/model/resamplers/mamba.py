"""A Mamba (S6) block in pure PyTorch with ``mamba_ssm.Mamba``'s parameter names and shapes.

``in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj`` match ``mamba_ssm`` exactly, so a
state dict moves between the two. On CUDA with ``mamba_ssm`` installed its fused selective
scan is used; everywhere else the PyTorch scan :mod:`.scan` chooses (compiled, plain loop or chunked).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cora.model.resamplers.scan import scan

try:  # optional CUDA kernels
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_scan
except ImportError:  # pragma: no cover - depends on the machine
    _cuda_scan = None


def mamba_ssm_available() -> bool:
    return _cuda_scan is not None


class MambaBlock(nn.Module):
    """``[b, L, d_model]`` → ``[b, L, d_model]`` (causal: token t sees tokens ≤ t)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        chunk_size: int = 16,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, padding=d_conv - 1, bias=True
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, floor: float) -> None:
        # mamba_ssm's initialisation: dt log-uniform in [dt_min, dt_max], bias = softplus⁻¹(dt).
        if self.dt_proj.weight.is_meta:
            return
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # [b, L, d_inner] each
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length]).transpose(1, 2)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = dt @ self.dt_proj.weight.t()  # bias enters inside the softplus, as in mamba_ssm
        A = -torch.exp(self.A_log.float())
        if _cuda_scan is not None and x.is_cuda:
            y = _cuda_scan(
                x.transpose(1, 2).contiguous(),
                dt.transpose(1, 2).contiguous(),
                A,
                B.transpose(1, 2).contiguous(),
                C.transpose(1, 2).contiguous(),
                self.D.float(),
                z=None,
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            ).transpose(1, 2)
        else:
            delta = F.softplus(dt + self.dt_proj.bias)
            y = scan(x, delta, A, B, C, self.D, chunk_size=self.chunk_size)
        return self.out_proj(y.to(hidden.dtype) * F.silu(z))
