"""An off-the-shelf VLM with CORA's additions: PanoRoPE position ids, overlap loss, first-batch health checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, ProcessorMixin

from cora.adapt.encode import EncodedBatch
from cora.adapt.families.base import VLMFamily
from cora.adapt.health import check_batch
from cora.adapt.overlap import OverlapFn, stack_tiles
from cora.adapt.panorope import flat_position_ids, mrope_position_ids
from cora.processors.geometry import ViewGeometry


@dataclass
class AdaptOutput:
    loss: torch.Tensor | None
    lm_loss: torch.Tensor | None
    overlap_loss: torch.Tensor | None
    logits: torch.Tensor
    #: the aligner output of the perspective tiles ``[B, T, h, w, D]`` (when asked for) and their geometries
    overlap_features: torch.Tensor | None = None
    tile_geometries: list[ViewGeometry] | None = None
    #: the native model's resampled tokens (diagnostics); an adapted VLM has no resampler
    resampler_features: torch.Tensor | None = None
    #: ``[B, T]`` the labels aligned with ``logits`` (the collated ones: image tokens come expanded)
    labels: torch.Tensor | None = None


class AdaptedVLM(nn.Module):
    """``AdaptedVLM(family, model, processor, ...)(batch: EncodedBatch) -> AdaptOutput``.

    The vision features are computed once per step: they feed the overlap loss and go to the HF
    forward as ``mm_encoder_outputs``, so the loss is attached to the same graph the LM loss uses.
    ``model`` may carry PEFT layers (injected in place); it stays the HF model object.
    """

    def __init__(
        self,
        family: VLMFamily,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        panorope: bool = True,
        overlap_loss: OverlapFn | None = None,
        overlap_weight: float = 0.0,
        lm_weight: float = 1.0,
        health_checks: bool = True,
    ) -> None:
        super().__init__()
        if overlap_weight > 0 and overlap_loss is None:
            raise ValueError("overlap_weight > 0 needs an overlap_loss")
        self.family = family
        self.model = model
        self.processor = processor
        self.panorope = panorope and family.rope != "none"
        self.overlap_loss = overlap_loss
        self.overlap_weight = overlap_weight
        self.lm_weight = lm_weight
        self.health_checks = health_checks
        self._checked = False
        self.set_peft(None)

    @property
    def peft(self) -> Any:
        """The PeftModel wrapping ``model`` once a LoRA recipe is applied (None before)."""
        return self.__dict__["_peft"]

    def set_peft(self, peft_model: Any) -> None:
        # Kept out of the module tree (nn.Module would register it) so state_dict keys stay the HF model's own.
        object.__setattr__(self, "_peft", peft_model)

    def position_ids(self, batch: EncodedBatch) -> torch.Tensor | None:
        """PanoRoPE ids for the batch (``[3, B, T]`` M-RoPE or ``[B, T]``), None when off."""
        if not self.panorope:
            return None
        inputs = batch.inputs
        grids = self.family.token_grids(inputs, self.model)
        image_id = self.family.image_token_id(self.processor)
        if self.family.rope == "mrope":
            ids, _ = mrope_position_ids(
                inputs["input_ids"], inputs["attention_mask"], image_id, grids, batch.geometries
            )
        else:
            ids = flat_position_ids(inputs["input_ids"], inputs["attention_mask"], image_id, grids, batch.geometries)
        return ids.to(inputs["input_ids"].device)

    def forward_kwargs(self, batch: EncodedBatch) -> tuple[dict[str, Any], Any]:
        inputs = batch.inputs
        kwargs = dict(self.family.forward_kwargs(inputs))
        encoded = self.family.encode_images(self.model, inputs) if self.family.precomputed else None
        if encoded is not None:
            kwargs["mm_encoder_outputs"] = {"image": encoded}
        position_ids = self.position_ids(batch)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        return kwargs, encoded

    def forward(self, batch: EncodedBatch, tile_features: bool = False) -> AdaptOutput:
        """LM loss (with labels), overlap loss (``overlap_weight > 0``) and, with ``tile_features``, the tiles'
        aligner features for an external overlap loss."""
        if self.health_checks and not self._checked:
            check_batch(self.family, self.processor, self.model, batch)
            self._checked = True
        inputs = batch.inputs
        kwargs, encoded = self.forward_kwargs(batch)
        out = self.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=inputs.get("labels"),
            **kwargs,
        )
        overlap = features = tile_geoms = None
        if self.overlap_weight > 0 or tile_features:
            grids = self.family.feature_grids(encoded, inputs, self.model)
            if self.overlap_weight > 0:
                overlap = self.overlap_loss(grids, batch.geometries)
            if tile_features:
                features, tile_geoms = stack_tiles(grids, batch.geometries)
        lm = out.loss
        parts = [w * t for w, t in ((self.lm_weight, lm), (self.overlap_weight, overlap)) if t is not None and w > 0]
        loss = torch.stack(parts).sum() if parts else None
        return AdaptOutput(loss, lm, overlap, out.logits, features, tile_geoms, labels=inputs.get("labels"))

    @torch.no_grad()
    def generate(self, batch: EncodedBatch, **generation_kwargs: Any) -> torch.Tensor:
        """New token ids ``[B, N]`` for a prompt batch (``encode_batch(..., answers=None)``, left padded).

        The HF ``generate`` computes the vision features itself (from the pixels); PanoRoPE ids are given for the
        prompt and ``generate`` continues them by +1 per new token. With ``return_dict_in_generate=True`` the HF
        output object is returned whole.
        """
        inputs = batch.inputs
        kwargs = dict(self.family.forward_kwargs(inputs))
        kwargs.setdefault("pixel_values", inputs["pixel_values"])
        position_ids = self.position_ids(batch)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        generation_kwargs.setdefault("do_sample", False)
        generation_kwargs.setdefault("pad_token_id", self.processor.tokenizer.pad_token_id)
        # A generated image token could never be fed back (an rl stage trains on its samples): never sample it.
        image_id = self.family.image_token_id(self.processor)
        suppressed = list(generation_kwargs.get("suppress_tokens") or [])
        if image_id is not None and image_id not in suppressed:
            generation_kwargs["suppress_tokens"] = [*suppressed, image_id]
        out = self.model.generate(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **kwargs, **generation_kwargs
        )
        if generation_kwargs.get("return_dict_in_generate"):
            return out
        return out[:, inputs["input_ids"].shape[1] :]
