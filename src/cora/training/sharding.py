"""Fully sharded data parallel (FSDP2) for the stage runner: the strategy, the sharding plan, full-state checkpoints.

``training.strategy: fsdp`` shards every parameter, gradient and optimiser state across the ranks with
PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) through Lightning's ``ModelParallelStrategy``,
on CUDA (NCCL) and on CPU (gloo) alike. Lightning's ``strategy="fsdp"`` (FSDP1) refuses a CPU, and its
resumable checkpoints are folders of per-rank shards tied to the world size. Here the runner gathers the
trainable weights and the optimiser state into the same single-file checkpoint every other strategy
writes (``torch.distributed.checkpoint``'s full state dicts, keyed by parameter name): a sharded run
resumes with ``--resume auto`` under ``fsdp`` or ``ddp``, and its checkpoints load without
``torch.distributed``. Only the trainable weights are gathered (LoRA, resampler, projectors in the
reference stages: a few per cent of the model), one parameter at a time; rank 0 alone keeps them.

What is hand-written: the sharding plan (which modules become FSDP units) — Lightning leaves it to
``configure_model`` and PyTorch to the caller.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

#: ``checkpoint["optimizer_layout"]`` of an optimiser state keyed by parameter name (any strategy loads it)
BY_NAME = "by_name"


class FullyShardedStrategy(ModelParallelStrategy):
    """FSDP2 over every rank of every node: data parallel only (no tensor parallelism).

    Lightning's ``ModelParallelStrategy`` defaults to tensor parallelism inside a node; here the whole
    world is one data-parallel mesh dimension, which is what ``strategy: fsdp`` means.
    """

    def __init__(self, **kwargs: Any) -> None:
        # Checkpoints are the runner's own (full state, rank 0 writes): Lightning's are never written.
        super().__init__(save_distributed_checkpoint=False, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    @contextmanager
    def block_backward_sync(self) -> Generator[None, None, None]:
        """Micro-batches before the last of an accumulated step keep their gradients unsharded and
        unreduced (one reduce-scatter per step instead of one per micro-batch), as Lightning's ``no_sync``
        does for DDP. It costs one whole fp32 copy of the trainable gradients per rank until the step's
        last micro-batch: small for adapters (LoRA, resampler, projectors), the size of the model for a
        stage that trains the LLM or the tower in full."""
        units = [m for m in self.lightning_module.modules() if isinstance(m, FSDPModule)]
        for unit in units:
            unit.set_requires_gradient_sync(False, recurse=False)
        try:
            yield
        finally:
            for unit in units:
                unit.set_requires_gradient_sync(True, recurse=False)


def build_strategy(name: str) -> str | FullyShardedStrategy:
    """The Lightning strategy of ``training.strategy`` (its other values are Lightning's own names)."""
    return FullyShardedStrategy() if name == "fsdp" else name


def shard_model(model: nn.Module, mesh: DeviceMesh) -> None:
    """Shard ``model`` in place over ``mesh``: each item of every outermost layer stack is one FSDP unit.

    Layer stacks are the ``nn.ModuleList``s (transformer layers of the tower and the LLM, resampler
    blocks): one unit per layer lets FSDP gather one layer's weights at a time. Everything else (embeddings,
    projectors, norms) is the root unit, gathered for the whole forward. Children are sharded before the
    root, as FSDP2 requires. Calling it on a model already sharded does nothing.
    """
    if isinstance(model, FSDPModule):
        return
    covered: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or any(name.startswith(c + ".") for c in covered):
            continue
        covered.append(name)
        for item in module:
            if any(True for _ in item.parameters()):
                fully_shard(item, mesh=mesh)
    fully_shard(model, mesh=mesh)
    # Sampling (an rl stage, generation during validation) enters through generate, not forward.
    if callable(getattr(type(model), "generate", None)):
        register_fsdp_forward_method(model, "generate")


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` is sharded across ranks (FSDP2): gathering its state is collective."""
    return any(isinstance(m, FSDPModule) for m in model.modules())


def reshard(model: nn.Module) -> None:
    """Put every FSDP unit of ``model`` back in its sharded state.

    A unit gathered for a forward without backward (validation: the root unit keeps its whole weights
    after forward, expecting a backward) holds other parameter objects than the optimiser's until then.
    """
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (collective: every rank must call it, in the same order)."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], str | None]:
    """The optimiser's state and its layout: keyed by parameter name when sharded (collective), else its own.

    Under FSDP only rank 0 receives the gathered state (the others get an empty dict: they do not write).
    """
    if not is_sharded(model):
        return optimizer.state_dict(), None
    reshard(model)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options), BY_NAME


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], layout: str | None
) -> None:
    """Restore a state from :func:`optimizer_state` into ``optimizer`` (sharded or not), whichever strategy
    wrote it: a run may resume under another strategy or number of ranks."""
    if layout != BY_NAME and not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    if layout != BY_NAME:
        state = _keyed_by_name(model, optimizer, state)
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def _keyed_by_name(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """A plain ``optimizer.state_dict()`` (parameters numbered in the optimiser's order) keyed by name instead."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    return {
        "state": {order[i]: value for i, value in state["state"].items()},
        "param_groups": [group | {"params": [order[i] for i in group["params"]]} for group in state["param_groups"]],
    }
