"""PanoramaVLM: vision tower → resampler → (VICReg projector | panorama projector → LLM)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cora.model.fusion import LanguageFusion, to_left_padding
from cora.model.language import LanguageModel
from cora.model.projectors import PanoramaProjector, VICRegProjector
from cora.model.resamplers import Resampler
from cora.model.stitching import plan_stitching
from cora.model.vision import VisionBackbone
from cora.processors.geometry import ViewGeometry

logger = logging.getLogger(__name__)

COMPONENTS = ("vision", "resampler", "vicreg_projector", "panorama_projector", "language_model")


@dataclass
class VisionFeatures:
    tokens: torch.Tensor  # [B, V, rows*cols, latent]
    rows: int
    cols: int


@dataclass
class PanoramaOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    overlap_features: torch.Tensor | None = None  # [B, T, rows, cols, D] (tiles only)
    tile_geometries: list[ViewGeometry] | None = None
    vision_tokens: int | None = None  # N vision tokens the LLM saw
    resampler_features: torch.Tensor | None = None  # [B, V, rows*cols, latent]


def tile_indices(geometries: Sequence[ViewGeometry]) -> list[int]:
    """Views the overlap loss works on: every view but the global one(s)."""
    return [i for i, g in enumerate(geometries) if g.kind != "global"]


class PanoramaVLM(nn.Module):
    """The CORA model. Components run or not according to the modes :meth:`set_stage` sets."""

    def __init__(
        self,
        vision: VisionBackbone,
        resampler: Resampler,
        vicreg_projector: VICRegProjector,
        panorama_projector: PanoramaProjector,
        language_model: LanguageModel,
        config: Any = None,
    ) -> None:
        super().__init__()
        self.vision = vision
        self.resampler = resampler
        self.vicreg_projector = vicreg_projector
        self.panorama_projector = panorama_projector
        self.language_model = language_model
        vid = language_model.vision_token_id
        self.fusion = LanguageFusion(vid if vid is not None else -1)
        self.config = config
        self.modes = {
            "vision": "frozen",
            "resampler": "full",
            "vicreg_projector": "full",
            "panorama_projector": "full",
            "language_model": "frozen",
        }
        self.ever_trainable: set[str] = set()

    @property
    def tokenizer(self):
        return self.language_model.tokenizer

    # -- vision ---------------------------------------------------------------------
    def encode_vision(self, pixel_values: torch.Tensor, geometries: Sequence[ViewGeometry]) -> VisionFeatures:
        """``[B, V, 3, S, S]`` in [0, 1] → resampled tokens ``[B, V, rows*cols, latent]``."""
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be [B, V, 3, S, S], got {tuple(pixel_values.shape)}")
        b, v = pixel_values.shape[:2]
        if v != len(geometries):
            raise ValueError(f"pixel_values has {v} views but {len(geometries)} geometries were given")
        flat = pixel_values.flatten(0, 1)
        vision_trains = any(p.requires_grad for p in self.vision.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and vision_trains):
            patches = self.vision(flat)  # [B*V, grid*grid, hidden]
        dtype = next(self.resampler.parameters(), patches).dtype
        tokens = self.resampler(patches.to(dtype))  # [B*V, L', latent]
        rows, cols = self.resampler.out_grid(self.vision.grid, self.vision.grid)
        return VisionFeatures(tokens.reshape(b, v, rows * cols, -1), rows, cols)

    def vision_embeddings(self, features: VisionFeatures, geometries: Sequence[ViewGeometry]) -> torch.Tensor:
        """Panorama projector: ``[B, N_vision, lm_hidden]``."""
        return self.panorama_projector(features.tokens, geometries, features.rows, features.cols)

    def overlap_features(self, features: VisionFeatures, geometries: Sequence[ViewGeometry]) -> torch.Tensor:
        """VICReg projector over the tiles: ``[B, T, rows, cols, D]``."""
        tiles = tile_indices(geometries)
        projected = self.vicreg_projector(features.tokens[:, tiles])
        return projected.view(projected.shape[0], len(tiles), features.rows, features.cols, -1)

    def num_vision_tokens(self, geometries: Sequence[ViewGeometry], stitching: str | None = None) -> int:
        rows, cols = self.resampler.out_grid(self.vision.grid, self.vision.grid)
        return plan_stitching(list(geometries), rows, cols, stitching or self.panorama_projector.stitching).num_tokens

    # -- language -------------------------------------------------------------------
    def _fuse(
        self,
        vision: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
    ):
        if self.language_model.vision_token_id is None:
            raise RuntimeError("the language model has no tokenizer: the <|vision|> placeholder is unknown")
        text = self.language_model.embed(input_ids)
        return self.fusion(input_ids, text, vision.to(text.dtype), attention_mask, labels)

    def forward(
        self,
        pixel_values: torch.Tensor,
        geometries: Sequence[ViewGeometry],
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> PanoramaOutput:
        """Stage-aware: overlap features when the VICReg projector is used, LM loss/logits when text is given
        and the language model is used."""
        geometries = list(geometries)
        features = self.encode_vision(pixel_values, geometries)
        out = PanoramaOutput(resampler_features=features.tokens)
        if self.modes["vicreg_projector"] != "unused" and tile_indices(geometries):
            out.overlap_features = self.overlap_features(features, geometries)
            out.tile_geometries = [geometries[i] for i in tile_indices(geometries)]
        uses_lm = self.modes["language_model"] != "unused" and self.modes["panorama_projector"] != "unused"
        if input_ids is not None and uses_lm:
            vision = self.vision_embeddings(features, geometries)
            fused = self._fuse(vision, input_ids, attention_mask, labels)
            lm_out = self.language_model(fused.inputs_embeds, fused.attention_mask, fused.position_ids, fused.labels)
            out.loss, out.logits, out.vision_tokens = lm_out.loss, lm_out.logits, vision.shape[1]
        return out

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        geometries: Sequence[ViewGeometry],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generation_kwargs: Any,
    ) -> torch.Tensor:
        """New token ids ``[B, new]``. Vision tokens are computed once; decoding uses the KV cache
        (unless ``use_cache=False`` is passed). Right-padded prompts are moved to left padding."""
        geometries = list(geometries)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if bool((attention_mask[:, -1] == 0).any()):
            input_ids, attention_mask = to_left_padding(input_ids, attention_mask, self.language_model.pad_token_id)
        vision = self.vision_embeddings(self.encode_vision(pixel_values, geometries), geometries)
        fused = self._fuse(vision, input_ids, attention_mask, None)
        tok = self.tokenizer
        generation_kwargs.setdefault("pad_token_id", self.language_model.pad_token_id)
        if tok is not None and tok.eos_token_id is not None:
            generation_kwargs.setdefault("eos_token_id", tok.eos_token_id)
        return self.language_model.model.generate(
            inputs_embeds=fused.inputs_embeds, attention_mask=fused.attention_mask, **generation_kwargs
        )

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations of the vision tower and the LLM in backward (HF's non-reentrant
        checkpointing; works with frozen bases and LoRA)."""
        for hf_model in (self.vision.tower, self.language_model.model):
            if not getattr(hf_model, "supports_gradient_checkpointing", False):
                continue
            if hasattr(hf_model, "activation_checkpointing_enable"):  # transformers ≥ 5.x
                hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # -- stages ---------------------------------------------------------------------
    def set_stage(self, stage: Any) -> list[dict[str, Any]]:
        """Apply a ``StageConfig``'s per-component modes; returns one row per component for logging."""
        from cora.model.stages import apply_stage

        return apply_stage(self, stage)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight that is not a frozen pretrained one: resampler, projectors, LoRA, and any
        vision/LM parameter that has been trainable in some stage."""
        own = ("resampler.", "vicreg_projector.", "panorama_projector.")
        keep = {}
        for name, p in self.named_parameters():
            if name.startswith(own) or "lora_" in name or name in self.ever_trainable or p.requires_grad:
                keep[name] = p.detach()
        return keep

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`trainable_state_dict` saved; unknown names are an error."""
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise KeyError(
                f"weights for parameters this model does not have: {unknown[:5]}{' …' if len(unknown) > 5 else ''}"
            )
        with torch.no_grad():
            for name, tensor in state.items():
                if params[name].shape != tensor.shape:
                    raise ValueError(f"{name}: saved shape {tuple(tensor.shape)} ≠ model {tuple(params[name].shape)}")
                params[name].copy_(tensor)
        self.ever_trainable.update(
            n for n in state if not n.startswith(("resampler.", "vicreg_projector.", "panorama_projector."))
        )

    def save_pretrained(self, out_dir: str) -> None:
        from cora.model.build import save_model

        save_model(self, out_dir)

    @classmethod
    def from_pretrained(cls, path: str, meta: bool = False) -> PanoramaVLM:
        from cora.model.build import load_model

        return load_model(path, meta=meta)
