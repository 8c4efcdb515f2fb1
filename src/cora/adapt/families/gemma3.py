"""Gemma 3: SigLIP tower, average-pool + linear multimodal projector (the aligner), 1-D RoPE LLM."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
)

from cora.adapt.families.base import VLMFamily
from cora.adapt.tokenizer import family_tokenizer

# gemma-3-it's template (image and text items): one <start_of_image> per image, which the processor
# expands to "\n\n<start_of_image><image_soft_token>×N<end_of_image>\n\n".
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' }}{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
PATCH = 8


class Gemma3Family(VLMFamily):
    name: ClassVar[str] = "gemma3"
    template: ClassVar[str] = GEMMA3_TEMPLATE
    rope: ClassVar = "1d"
    aligner_modules: ClassVar[tuple[str, ...]] = ("multi_modal_projector",)
    assistant_header: ClassVar[str] = "<start_of_turn>model\n"
    end_of_turn: ClassVar[str] = "<end_of_turn>"

    @property
    def model_class(self) -> type[PreTrainedModel]:
        return Gemma3ForConditionalGeneration

    def offline_processor(self, image_size: int) -> ProcessorMixin:
        tok = family_tokenizer(
            SPECIALS,
            GEMMA3_TEMPLATE,
            eos_token="<eos>",
            pad_token="<pad>",
            bos_token="<bos>",
            boi_token="<start_of_image>",
            eoi_token="<end_of_image>",
            image_token="<image_soft_token>",
        )
        images = Gemma3ImageProcessorPil(
            size={"height": image_size, "width": image_size},
            do_pan_and_scan=False,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )
        seq = (image_size // PATCH // 2) ** 2  # the projector average-pools 2×2 patches
        return Gemma3Processor(
            image_processor=images, tokenizer=tok, image_seq_length=seq, chat_template=GEMMA3_TEMPLATE
        )

    def image_token_id(self, processor: ProcessorMixin) -> int:
        # Gemma3Processor.image_token_id is <start_of_image>; the expanded tokens are the soft tokens.
        return int(processor.tokenizer.image_token_id)

    def tiny_config(self, processor: ProcessorMixin, image_size: int) -> PretrainedConfig:
        tok = processor.tokenizer
        return Gemma3Config(
            text_config={
                "vocab_size": len(tok),
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "query_pre_attn_scalar": 16,
                "sliding_window": 64,
                "max_position_embeddings": 4096,
                "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": image_size,
                "patch_size": PATCH,
            },
            mm_tokens_per_image=processor.image_seq_length,
            boi_token_index=tok.boi_token_id,
            eoi_token_index=tok.eoi_token_id,
            image_token_index=tok.image_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )

    def _init_tiny(self, model: PreTrainedModel) -> None:
        # HF initialises the projection matrix to zeros: every image feature would be 0 (a dead overlap loss).
        weight = model.model.multi_modal_projector.mm_input_projection_weight
        with torch.no_grad():
            weight.normal_(0.0, weight.shape[0] ** -0.5)

    def forward_kwargs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # token_type_ids give the image blocks their bidirectional attention.
        return {"token_type_ids": inputs["token_type_ids"]} if "token_type_ids" in inputs else {}

    def encode_images(self, model: PreTrainedModel, inputs: dict[str, Any]) -> Any:
        return model.model.get_image_features(inputs["pixel_values"], return_dict=True)

    def feature_grids(self, encoded: Any, inputs: dict[str, Any], model: PreTrainedModel) -> list[torch.Tensor]:
        feats = encoded.pooler_output  # [images, tokens, D], average pool keeps raster order
        side = round(feats.shape[1] ** 0.5)
        return [f.reshape(side, side, -1) for f in feats]

    def image_token_counts(self, inputs: dict[str, Any], model: PreTrainedModel) -> list[int]:
        return [int(model.config.mm_tokens_per_image)] * int(inputs["pixel_values"].shape[0])
