"""One source of valid names for every swappable part: crop strategies, resamplers, overlap losses,
loggers, rewards, VLM families.

Each registry maps a name (what a config writes) to ``"module:attribute"`` of its implementation,
imported only when it is used, like transformers' auto-model name tables. The config layer validates
names against these tables without importing torch or the model, and the builders (``build_resampler``,
``build_loss``, ``get_strategy``, ...) resolve the same tables, so what a config accepts and what can
be built cannot disagree (``tests/test_registry.py`` imports every entry).

Adding a part = one file (or function) implementing it + one line in its table below.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


def closest(name: str, names: Iterable[str], n: int = 2) -> str:
    """`` (did you mean 'x'?)`` for the valid names closest to a misspelt one, else ``""``."""
    close = difflib.get_close_matches(str(name), list(names), n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


@dataclass(frozen=True)
class Registry:
    """Names of one kind of part → where each is implemented.

    ``options``: for parts configured from one shared flat section (resamplers), the option names
    each part takes; the config refuses options set for a part that does not take them.
    """

    kind: str
    config_key: str
    entries: Mapping[str, str]
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def check(self, name: str) -> str:
        """``name`` if registered, else a ``ValueError`` naming the closest valid names and all of them."""
        if name in self.entries:
            return name
        raise ValueError(f"unknown {self.kind} {name!r}{closest(name, self.names())}; valid: {', '.join(self.names())}")

    def load(self, name: str) -> Any:
        """The implementation registered as ``name`` (imported on first use)."""
        module, _, attribute = self.entries[self.check(name)].partition(":")
        return getattr(importlib.import_module(module), attribute)


CROP_STRATEGIES = Registry(
    "crop strategy",
    "image_processing.crop_strategy",
    {
        "resize": "cora.processors.strategies:resize",
        "e2p": "cora.processors.strategies:e2p",
        "cubemap": "cora.processors.strategies:cubemap",
        "sliding_window": "cora.processors.strategies:sliding_window",
        "anyres": "cora.processors.strategies:anyres",
        "anyres_max": "cora.processors.strategies:anyres_max",
        "anyres_e2p": "cora.processors.strategies:anyres_e2p",
    },
)

RESAMPLERS = Registry(
    "resampler",
    "models.resampler_type",
    {
        "mlp": "cora.model.resamplers.mlp:MLPResampler",
        "bimamba": "cora.model.resamplers.bimamba:BiMambaResampler",
        "c_abstractor": "cora.model.resamplers.c_abstractor:CAbstractor",
        "perceiver": "cora.model.resamplers.perceiver:PerceiverResampler",
        "qformer": "cora.model.resamplers.qformer:QFormerResampler",
        "spatial_pool": "cora.model.resamplers.spatial_pool:SpatialPoolResampler",
        "masked_drop": "cora.model.resamplers.masked_drop:MaskedDropResampler",
        "identity": "cora.model.resamplers.identity:IdentityResampler",
        "avgpool": "cora.model.resamplers.avgpool:AvgPoolResampler",
        "conv": "cora.model.resamplers.conv:ConvResampler",
    },
    # The keyword arguments of each class past (in_dim, out_dim); tests check them against the signatures.
    options={
        "mlp": ("hidden_dim", "dropout"),
        "bimamba": ("depth", "d_state", "d_conv", "expand", "dropout", "chunk_size", "direction_merge"),
        "c_abstractor": ("depth", "pool_size", "c_abstractor_pool"),
        "perceiver": ("depth", "num_heads", "num_latents", "dropout"),
        "qformer": ("depth", "num_heads", "num_latents", "dropout"),
        "spatial_pool": ("pool_size", "dropout"),
        "masked_drop": ("drop_ratio", "dropout"),
        "identity": (),
        "avgpool": ("pool_size",),
        "conv": ("pool_size",),
    },
)

LOSSES = Registry(
    "overlap loss",
    "training.stage_configs.<stage>.loss.type",
    {
        "vicreg": "cora.training.losses.vicreg:build_vicreg",
        "vicreg_pairwise": "cora.training.losses.vicreg_pairwise:build_vicreg_pairwise",
        "infonce": "cora.training.losses.infonce:build_infonce",
        "densecl": "cora.training.losses.densecl:build_densecl",
    },
)

LOGGERS = Registry(
    "logger",
    "training.loggers",
    {
        "csv": "cora.training.loggers:csv_logger",
        "tensorboard": "cora.training.loggers:tensorboard_logger",
        "wandb": "cora.training.loggers:wandb_logger",
    },
)

REWARDS = Registry(
    "reward",
    "training.stage_configs.<stage>.rl.rewards",
    {
        "exact_match": "cora.rewards.verifiable:exact_match_reward",
        "numeric": "cora.rewards.verifiable:numeric_reward",
        "set_f1": "cora.rewards.verifiable:set_f1_reward",
        "yaw": "cora.rewards.verifiable:yaw_reward",
        "format": "cora.rewards.verifiable:format_reward",
        "judge": "cora.rewards.judge:judge_reward",
        "feedback": "cora.rewards.verifiable:feedback_reward",
    },
)

VLM_FAMILIES = Registry(
    "VLM family",
    "adapt.family",
    {
        "qwen2_5_vl": "cora.adapt.families.qwen2_5_vl:Qwen2_5VLFamily",
        "qwen3_vl": "cora.adapt.families.qwen3_vl:Qwen3VLFamily",
        "internvl": "cora.adapt.families.internvl:InternVLFamily",
        "gemma3": "cora.adapt.families.gemma3:Gemma3Family",
        "blip2": "cora.adapt.families.blip2:Blip2Family",
    },
)

REGISTRIES = (CROP_STRATEGIES, RESAMPLERS, LOSSES, LOGGERS, VLM_FAMILIES)
