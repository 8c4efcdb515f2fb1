"""The vision tower: any HF image encoder, returning the patch-token grid of each view.

Pixels arrive in [0, 1]; the tower's own normalisation (mean/std of its image processor)
is applied here, so every crop strategy and data path stays encoder-agnostic.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from cora.config.base import ArchSpec
from cora.model.arch import hf_config_from_arch

logger = logging.getLogger(__name__)

# Normalisation per model family, used when no image-processor config can be read
# (architecture-only towers, offline hub names).
_FAMILY_MEAN_STD = {
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "dinov2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _family(model_type: str) -> str:
    for family in _FAMILY_MEAN_STD:
        if model_type.startswith(family):
            return family
    return "siglip"


def _read_processor_mean_std(name: str) -> tuple[list[float], list[float]] | None:
    """``image_mean`` / ``image_std`` from the folder's (or cached hub repo's) processor config."""
    path = Path(name) / "preprocessor_config.json"
    if not path.is_file():
        try:
            from transformers.utils import cached_file

            found = cached_file(name, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
        except Exception:  # offline and not cached: fall back to the family defaults
            found = None
        if not found:
            return None
        path = Path(found)
    data = json.loads(path.read_text())
    if "image_mean" in data and "image_std" in data:
        return list(data["image_mean"]), list(data["image_std"])
    return None


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    """The vision sub-config of a dual-encoder checkpoint (SigLIP, CLIP), else the config itself."""
    return getattr(config, "vision_config", None) or config


def load_vision_tower(
    name: str | None = None, arch: ArchSpec | None = None, dtype: torch.dtype | None = None, meta: bool = False
) -> nn.Module:
    """The HF vision model by hub name / folder, or randomly initialised from ``arch``.

    A dual-encoder checkpoint (``google/siglip2-...``, ``openai/clip-...``) yields its vision
    half only. ``meta``: built from the config on the meta device, no weights read.
    """
    if arch is None and name is None:
        raise ValueError("vision tower: give models.vision_name or models.vision_arch")
    config = hf_config_from_arch(arch) if arch is not None else AutoConfig.from_pretrained(name)
    vision_config = _vision_config(config)
    if arch is not None or meta:
        with torch.device("meta") if meta else torch.device("cpu"):
            return AutoModel.from_config(vision_config, dtype=dtype)
    if vision_config is config:
        return AutoModel.from_pretrained(name, dtype=dtype)
    from transformers.models.auto.modeling_auto import MODEL_MAPPING
    from transformers.utils import logging as hf_logging

    cls = MODEL_MAPPING[type(vision_config)]
    # The text half's weights are "unexpected" by design: keep HF from listing every one of them.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tower = cls.from_pretrained(name, config=vision_config, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    logger.info("%s: loaded the vision half (%s) of a %s checkpoint", name, cls.__name__, config.model_type)
    return tower


def _block_list(model: nn.Module, num_layers: int) -> nn.ModuleList:
    """The transformer blocks (``encoder.layers`` in SigLIP/CLIP, ``encoder.layer`` in DINOv2)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {num_layers} transformer blocks found")


def _drop_pooling_head(tower: nn.Module) -> None:
    """Remove SigLIP's attention-pooling head: CORA uses the patch tokens, never the pooled vector."""
    inner = getattr(tower, "vision_model", tower)
    if getattr(inner, "use_head", False) and hasattr(inner, "head"):
        del inner.head
        inner.use_head = False


class VisionBackbone(nn.Module):
    """``pixels [N, 3, S, S]`` in [0, 1] → patch tokens ``[N, grid*grid, hidden]`` (CLS/registers dropped)."""

    def __init__(self, tower: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.tower = tower
        _drop_pooling_head(tower)
        config = _vision_config(tower.config)
        self.model_type = config.model_type
        self.hidden_size = int(config.hidden_size)
        self.patch_size = int(config.patch_size)
        # SigLIP2 NaFlex towers take pre-cut patches and have a patch budget, not an image size:
        # CORA feeds them a square grid of num_patches.
        self.naflex = self.model_type.startswith("siglip2")
        if self.naflex:
            self.grid = math.isqrt(int(config.num_patches))
            self.image_size = self.grid * self.patch_size
        else:
            self.image_size = int(config.image_size)
            self.grid = self.image_size // self.patch_size
        self.num_layers = int(config.num_hidden_layers)
        self.blocks = _block_list(tower, self.num_layers)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` in [0, 1] → ``[N, grid*grid, hidden]``."""
        if pixels.shape[-1] != self.image_size or pixels.shape[-2] != self.image_size:
            pixels = F.interpolate(
                pixels, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        dtype = next(self.tower.parameters()).dtype
        pixels = ((pixels - self.mean) / self.std).to(dtype)
        hidden = self._naflex_forward(pixels) if self.naflex else self.tower(pixel_values=pixels).last_hidden_state
        # CLIP/DINOv2 put CLS (and register tokens) first; the patch grid is the tail.
        extra = hidden.shape[1] - self.num_tokens
        if extra < 0:
            raise ValueError(f"vision tower returned {hidden.shape[1]} tokens, expected ≥ {self.num_tokens}")
        return hidden[:, extra:]

    def _naflex_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        n, g, p = pixels.shape[0], self.grid, self.patch_size
        # Siglip2ImageProcessor's layout: row-major patches, each flattened as [p, p, C].
        patches = pixels.view(n, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * 3)
        mask = torch.ones(n, g * g, dtype=torch.long, device=pixels.device)
        shapes = torch.tensor([[g, g]] * n, dtype=torch.long, device=pixels.device)
        return self.tower(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes).last_hidden_state

    def set_trainable_blocks(self, n: int) -> None:
        """0: all frozen; N: the last N blocks train; -1: everything trains."""
        for p in self.tower.parameters():
            p.requires_grad_(n == -1)
        if n > 0:
            for block in list(self.blocks)[-n:]:
                for p in block.parameters():
                    p.requires_grad_(True)
            # The final norm sits after the trainable blocks: it trains with them (CLIP's
            # post_layernorm only touches the pooled vector, which is not used).
            for name, p in self.tower.named_parameters():
                if self.model_type.startswith("clip"):
                    break
                if "post_layernorm" in name or name.startswith("layernorm"):
                    p.requires_grad_(True)


def build_vision_backbone(
    name: str | None, arch: ArchSpec | None = None, dtype: torch.dtype | None = None, meta: bool = False
) -> VisionBackbone:
    """A :class:`VisionBackbone` from a hub name / folder or an architecture spec."""
    tower = load_vision_tower(name, arch, dtype, meta)
    found = None if arch is not None else _read_processor_mean_std(name)
    if found is None:
        found = _FAMILY_MEAN_STD[_family(_vision_config(tower.config).model_type)]
        logger.info("vision normalisation: %s family defaults", _family(_vision_config(tower.config).model_type))
    mean, std = found
    return VisionBackbone(tower, list(mean), list(std))


def grid_side(num_tokens: int) -> int:
    """The side of a square token grid; an error when ``num_tokens`` is not a square."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{num_tokens} tokens do not form a square grid")
    return side
