"""Qwen2.5-VL: dynamic-resolution ViT, 2×2 patch merger (the aligner), M-RoPE (t, h, w) positions."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
)

from cora.adapt.families.base import VLMFamily, image_only
from cora.adapt.tokenizer import family_tokenizer

# The checkpoint's own template (Qwen2.5-VL-Instruct), image and text items only: it writes one
# <|image_pad|> per image, which the processor expands to the image's merged-token count.
QWEN2_5_VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

PATCH = 8  # tiny: 8 px patches, 2×2 merge -> one LLM token per 16×16 px


class QwenVLBase(VLMFamily):
    rope: ClassVar = "mrope"
    template: ClassVar[str] = QWEN2_5_VL_TEMPLATE

    def _image_processor(self, image_size: int) -> Qwen2VLImageProcessorPil:
        factor = PATCH * 2
        return Qwen2VLImageProcessorPil(
            patch_size=PATCH,
            temporal_patch_size=2,
            merge_size=2,
            size={"shortest_edge": factor * factor, "longest_edge": 4 * image_size**2},
        )

    def _tokenizer(self):
        return family_tokenizer(
            QWEN_SPECIALS,
            self.template,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            image_token="<|image_pad|>",
            video_token="<|video_pad|>",
            vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
        )

    def forward_kwargs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        keys = ("image_grid_thw", "mm_token_type_ids")
        return {k: inputs[k] for k in keys if k in inputs}

    def encode_images(self, model: PreTrainedModel, inputs: dict[str, Any]) -> Any:
        return model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)

    def _merge(self, model: PreTrainedModel) -> int:
        return int(model.config.vision_config.spatial_merge_size)

    def feature_grids(self, encoded: Any, inputs: dict[str, Any], model: PreTrainedModel) -> list[torch.Tensor]:
        merge = self._merge(model)
        grids = []
        # Merged tokens come out in raster order of the (h/merge, w/merge) grid, one tensor per image.
        for feats, (t, h, w) in zip(encoded.pooler_output, inputs["image_grid_thw"].tolist(), strict=True):
            grids.append(feats.reshape(t, h // merge, w // merge, -1)[0])
        return grids

    def token_grids(self, inputs: dict[str, Any], model: PreTrainedModel) -> list[tuple[int, int]]:
        merge = self._merge(model)
        return [(h // merge, w // merge) for _, h, w in inputs["image_grid_thw"].tolist()]

    def image_token_counts(self, inputs: dict[str, Any], model: PreTrainedModel) -> list[int]:
        merge = self._merge(model)
        return [int(t * h * w) // merge**2 for t, h, w in inputs["image_grid_thw"].tolist()]


class Qwen2_5VLFamily(QwenVLBase):
    name: ClassVar[str] = "qwen2_5_vl"
    aligner_modules: ClassVar[tuple[str, ...]] = ("visual.merger",)

    @property
    def model_class(self) -> type[PreTrainedModel]:
        return Qwen2_5_VLForConditionalGeneration

    def offline_processor(self, image_size: int) -> ProcessorMixin:
        return image_only(Qwen2_5_VLProcessor)(
            image_processor=self._image_processor(image_size), tokenizer=self._tokenizer(), chat_template=self.template
        )

    def tiny_config(self, processor: ProcessorMixin, image_size: int) -> PretrainedConfig:
        tok = processor.tokenizer
        hidden = 64
        return Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tok),
                "hidden_size": hidden,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 2048,
                "bos_token_id": None,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            },
            vision_config={
                "depth": 2,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "patch_size": PATCH,
                "temporal_patch_size": 2,
                "spatial_merge_size": 2,
                "window_size": 4 * PATCH,
                "fullatt_block_indexes": [1],
                "out_hidden_size": hidden,
            },
            image_token_id=tok.image_token_id,
            video_token_id=tok.video_token_id,
            vision_start_token_id=tok.vision_start_token_id,
            vision_end_token_id=tok.vision_end_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=True,
        )
