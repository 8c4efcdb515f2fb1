"""Stage checkpoints: trainable weights + optimizer/scheduler/RNG state, atomic and checksummed.

File layout: ``MAGIC | sha256(payload) (32 bytes) | len(payload) (8 bytes, big endian) | payload``
where the payload is a ``torch.save`` of a dict of tensors and plain values (read back with
``weights_only=True``). The file is written to a temp name and renamed, so a reader never
sees a half-written checkpoint under its final name; a truncated or altered file fails the
length or checksum test with a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cora.training.sharding import full_tensor
from cora.utils.io import atomic_open

MAGIC = b"CORA-CKPT\x01"
_HEADER = len(MAGIC) + 32 + 8


class CheckpointError(Exception):
    """A checkpoint that is missing, not a CORA checkpoint, truncated or corrupt."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically with its checksum; returns the path."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        handle.write(MAGIC + hashlib.sha256(data).digest() + len(data).to_bytes(8, "big"))
        handle.write(data)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise CheckpointError(f"checkpoint {path} is not a CORA checkpoint (bad header)")
    if len(raw) < _HEADER:
        raise CheckpointError(f"checkpoint {path} is truncated (header incomplete)")
    digest = raw[len(MAGIC) : len(MAGIC) + 32]
    size = int.from_bytes(raw[len(MAGIC) + 32 : _HEADER], "big")
    data = raw[_HEADER:]
    if len(data) != size:
        raise CheckpointError(
            f"checkpoint {path} is truncated ({len(data)} of {size} payload bytes): "
            "resume from an earlier checkpoint or delete it"
        )
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt (checksum mismatch): resume from an earlier checkpoint or delete it"
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def trainable_state_dict(model: nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """Only the parameters that train in the current stage (detached whole CPU copies).

    Collective when the model is sharded (FSDP): every rank must call it, and a rank that does not write
    passes ``keep=False`` (it joins each gather, then drops the tensor: one parameter at a time in memory).
    """
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            whole = full_tensor(p)
            if keep:
                out[name] = whole.detach().cpu().clone()
    return out


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> None:
    """Copy ``state`` into ``model``'s parameters; every key must exist with the same shape."""
    params = dict(model.named_parameters())
    missing = [k for k in state if k not in params]
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} weights have no place in this model, e.g. {missing[:3]} "
            "(was it written by a different config?)"
        )
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise CheckpointError(
                    f"{source}: {name} has shape {tuple(value.shape)}, the model expects {tuple(params[name].shape)}"
                )
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states, as weights_only-loadable values."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [*internal, version, gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
