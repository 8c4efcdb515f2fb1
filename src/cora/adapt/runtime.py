"""``PanoramaAdapter``: an adapted VLM behind the project's model contract, so the stage runner trains it.

``model(pixel_values [B, V, 3, H, W], geometries, input_ids, attention_mask, labels)`` → ``.loss`` (LM),
``.logits``, ``.overlap_features [B, T, h, w, D]`` (the VLM's aligner output on the tiles, when the stage
weights an overlap loss) and ``.tile_geometries``. The pixels are the project's [0, 1] floats; the
family's own image processor turns them into its inputs inside the model (as the contract asks), and
the ids come from the family's processor in :class:`cora.adapt.data.AdaptCollator`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cora.adapt.encode import EncodedBatch
from cora.adapt.families import AdaptConfigError, VLMFamily, get_family
from cora.adapt.families.base import token_runs
from cora.adapt.inputs import MULTI_IMAGE_MODES, panorama_from_pixels
from cora.adapt.model import AdaptedVLM, AdaptOutput
from cora.adapt.recipes import apply_recipe
from cora.config.schema import CoraConfig
from cora.config.sections.adapt import AdaptConfig
from cora.config.sections.training import StageConfig
from cora.processors.geometry import ViewGeometry


def load_vlm(cfg: AdaptConfig, seed: int = 0) -> tuple[VLMFamily, nn.Module, Any]:
    """The family, its HF model and its processor: a checkpoint folder/hub id, or the tiny offline model."""
    family = get_family(cfg.family)
    if cfg.tiny:
        model, processor = family.build_tiny(cfg.tiny_image_size, seed=seed)
        return family, model, processor
    from transformers import AutoProcessor

    kwargs = {k: v for k, v in (("dtype", cfg.dtype), ("attn_implementation", cfg.attn_implementation)) if v}
    model = family.model_class.from_pretrained(cfg.model_name, **kwargs)
    processor = AutoProcessor.from_pretrained(cfg.model_name)
    if not getattr(processor, "chat_template", None):
        # BLIP-2 checkpoints ship no chat template: use the family's prompt format (template first everywhere).
        processor.chat_template = family.template
    return family, model, processor


class PanoramaAdapter(nn.Module):
    """The stage runner's view of an :class:`AdaptedVLM` (``set_stage`` = the recipe of the stage)."""

    def __init__(self, adapted: AdaptedVLM, cfg: AdaptConfig) -> None:
        super().__init__()
        self.adapted = adapted
        self.cfg = cfg
        self._features = False
        self.stage_recipe: str | None = None

    @property
    def family(self) -> VLMFamily:
        return self.adapted.family

    @property
    def processor(self) -> Any:
        return self.adapted.processor

    @property
    def tokenizer(self) -> Any:
        return self.adapted.processor.tokenizer

    def enable_gradient_checkpointing(self) -> None:
        """``training.gradient_checkpointing``: the HF model's own (non-reentrant, so frozen inputs work)."""
        self.adapted.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def set_stage(self, stage_cfg: StageConfig) -> list[dict[str, Any]]:
        recipe = "lora" if stage_cfg.language_model == "lora" else "aligner"
        if stage_cfg.overlap_loss_weight > 0:
            if self.family.name == "blip2":
                raise AdaptConfigError(
                    "blip2 is a plain baseline: its Q-Former queries have no patch grid; "
                    "set the stage's overlap_loss_weight to 0"
                )
            if self.cfg.input_mode != "anyres_e2p":
                raise AdaptConfigError(
                    f"overlap_loss_weight > 0 needs overlapping tiles: adapt.input_mode "
                    f"{self.cfg.input_mode!r} has none (use anyres_e2p, or set the weight to 0)"
                )
        counts = apply_recipe(self.adapted, recipe, stage_cfg.lora or self.cfg.lora)
        self.stage_recipe = recipe
        self._features = stage_cfg.overlap_loss_weight > 0
        trains = "aligner + LLM LoRA" if recipe == "lora" else "aligner"
        return [
            {"component": "vision tower", "mode": "frozen"},
            {"component": f"aligner ({', '.join(self.family.aligner_modules)})", "mode": "full"},
            {"component": "language model", "mode": "lora" if recipe == "lora" else "frozen"},
            {"component": f"trainable ({trains})", "mode": f"{counts['trainable']:,} / {counts['total']:,}"},
        ]

    def encoded_batch(
        self,
        pixel_values: torch.Tensor,
        geometries: list[ViewGeometry],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> EncodedBatch:
        """Contract batch → the family's inputs: images through its image processor, ids as collated."""
        family, processor = self.family, self.processor
        panos = [panorama_from_pixels(p, geometries) for p in pixel_values]
        images = [im for pano in panos for im in pano.images]
        if not family.multi_image and len(geometries) > 1:
            raise ValueError(f"{family.name} takes one image per turn; the batch has {len(geometries)} views")
        # The image-side defaults the processor itself would apply (InternVL: crop_to_patches; Gemma 3: pan & scan).
        images_kwargs = processor._merge_kwargs(tokenizer_init_kwargs=processor.tokenizer.init_kwargs)["images_kwargs"]
        images_kwargs.pop("return_tensors", None)
        vision = dict(processor.image_processor(images=images, return_tensors="pt", **images_kwargs))
        vision.pop("num_patches", None)  # InternVL: recomputed by extra_inputs below
        inputs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            **vision,
            **family.extra_inputs(processor, images),
        }
        image_id = family.image_token_id(processor)
        # Processor-side token types the forward needs, rebuilt from the ids (Qwen: mm_token_type_ids,
        # Gemma 3: token_type_ids): 1 on the expanded image tokens.
        types = torch.zeros_like(input_ids)
        for b, row in enumerate(input_ids):
            for start, end in token_runs(row, image_id):
                types[b, start:end] = 1
        inputs["mm_token_type_ids" if family.rope == "mrope" else "token_type_ids"] = types
        if labels is not None:
            inputs["labels"] = labels
        device = input_ids.device
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        n = len(geometries)
        return EncodedBatch(inputs, [list(geometries)] * len(panos), [n] * len(panos))

    def forward(
        self,
        pixel_values: torch.Tensor,
        geometries: list[ViewGeometry],
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> AdaptOutput:
        if input_ids is None:
            raise ValueError("an adapted VLM trains on image + text batches (input_ids missing)")
        batch = self.encoded_batch(pixel_values, geometries, input_ids, attention_mask, labels)
        return self.adapted(batch, tile_features=self._features)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        geometries: list[ViewGeometry],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        **generation_kwargs: Any,
    ) -> torch.Tensor:
        """New token ids for left-padded prompts built by the family's processor."""
        batch = self.encoded_batch(pixel_values, geometries, input_ids, attention_mask)
        return self.adapted.generate(batch, **generation_kwargs)


def build_adapter(config: CoraConfig) -> PanoramaAdapter:
    """The stage runner's model factory for configs with an ``adapt:`` section."""
    cfg = config.adapt
    if cfg is None:
        raise AdaptConfigError("the config has no adapt: section")
    family = get_family(cfg.family)
    if not family.multi_image and cfg.input_mode in MULTI_IMAGE_MODES:
        raise AdaptConfigError(
            f"adapt.input_mode {cfg.input_mode!r} shows several images, but {family.name} takes one "
            f"image per turn (use native or resize)"
        )
    family, model, processor = load_vlm(cfg, seed=config.experiment.seed)
    model.train()  # from_pretrained/build_tiny give eval mode; LoRA and the LLM's dropout must be live in training
    adapted = AdaptedVLM(family, model, processor, panorope=cfg.panorope, health_checks=cfg.health_checks)
    return PanoramaAdapter(adapted, cfg)
