"""Qwen3-VL: ViT with learned position grid, 2×2 merger + DeepStack mergers (the aligner), interleaved M-RoPE."""

from __future__ import annotations

from typing import ClassVar

from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)

from cora.adapt.families.base import image_only
from cora.adapt.families.qwen2_5_vl import PATCH, QwenVLBase

# Qwen3-VL-Instruct's template (image and text items): no default system prompt.
QWEN3_VL_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Qwen3VLFamily(QwenVLBase):
    name: ClassVar[str] = "qwen3_vl"
    template: ClassVar[str] = QWEN3_VL_TEMPLATE
    aligner_modules: ClassVar[tuple[str, ...]] = ("visual.merger", "visual.deepstack_merger_list")

    @property
    def model_class(self) -> type[PreTrainedModel]:
        return Qwen3VLForConditionalGeneration

    def offline_processor(self, image_size: int) -> ProcessorMixin:
        return image_only(Qwen3VLProcessor)(
            image_processor=self._image_processor(image_size), tokenizer=self._tokenizer(), chat_template=self.template
        )

    def tiny_config(self, processor: ProcessorMixin, image_size: int) -> PretrainedConfig:
        tok = processor.tokenizer
        hidden = 64
        side = 2 * image_size // PATCH  # learned position grid, interpolated to each image's patch grid
        return Qwen3VLConfig(
            text_config={
                "vocab_size": len(tok),
                "hidden_size": hidden,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "max_position_embeddings": 2048,
                "bos_token_id": None,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "mrope_section": [2, 3, 3],
                    "mrope_interleaved": True,
                },
            },
            vision_config={
                "depth": 2,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "patch_size": PATCH,
                "temporal_patch_size": 2,
                "spatial_merge_size": 2,
                "num_position_embeddings": side * side,
                "deepstack_visual_indexes": [0],
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
