"""BLIP-2: the plain baseline. Q-Former queries (no patch grid), OPT LLM, one image per turn.

No PanoRoPE (its image tokens are 32 learned queries, not a grid) and no overlap loss; it runs
in the single-image input modes (``native``, ``resize``) so the baseline rows of the table exist.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessorPil,
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
)

from cora.adapt.families.base import VLMFamily
from cora.adapt.tokenizer import family_tokenizer

# BLIP-2 has no chat template; this is its documented prompt format ("Question: … Answer:"), as a
# template so that every family goes through apply_chat_template. The processor prepends the query tokens.
BLIP2_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text')"
    " | join(' ') %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ 'Question: ' + text + ' Answer:' }}"
    "{% else %}{{ ' ' + text + eos_token }}{% endif %}{% endfor %}"
)

SPECIALS = ("<pad>", "</s>", "<image>")
NUM_QUERY_TOKENS = 8


class Blip2Family(VLMFamily):
    name: ClassVar[str] = "blip2"
    template: ClassVar[str] = BLIP2_TEMPLATE
    rope: ClassVar = "none"
    multi_image: ClassVar[bool] = False
    precomputed: ClassVar[bool] = False
    aligner_modules: ClassVar[tuple[str, ...]] = ("qformer", "language_projection")
    language_model_prefix: ClassVar[str] = "language_model."
    assistant_header: ClassVar[str] = " Answer:"
    end_of_turn: ClassVar[str] = "</s>"

    @property
    def model_class(self) -> type[PreTrainedModel]:
        return Blip2ForConditionalGeneration

    def offline_processor(self, image_size: int) -> ProcessorMixin:
        tok = family_tokenizer(SPECIALS, BLIP2_TEMPLATE, eos_token="</s>", pad_token="<pad>")
        images = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
        processor = Blip2Processor(image_processor=images, tokenizer=tok, num_query_tokens=NUM_QUERY_TOKENS)
        processor.chat_template = BLIP2_TEMPLATE  # Blip2Processor.__init__ does not forward chat_template
        return processor

    def image_token_id(self, processor: ProcessorMixin) -> int:
        # Blip2Processor registers "<image>" itself (as an AddedToken) when the tokenizer names none.
        return int(processor.tokenizer.convert_tokens_to_ids(str(processor.image_token)))

    def tiny_config(self, processor: ProcessorMixin, image_size: int) -> PretrainedConfig:
        tok = processor.tokenizer
        return Blip2Config(
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": image_size,
                "patch_size": 8,
            },
            qformer_config={
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "encoder_hidden_size": 32,
                "vocab_size": len(tok),
            },
            text_config={
                "model_type": "opt",
                "vocab_size": len(tok),
                "hidden_size": 64,
                "ffn_dim": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "word_embed_proj_dim": 64,
                "max_position_embeddings": 512,
                "bos_token_id": tok.eos_token_id,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            num_query_tokens=NUM_QUERY_TOKENS,
            image_token_index=self.image_token_id(processor),
        )

    def encode_images(self, model: PreTrainedModel, inputs: dict[str, Any]) -> Any:
        return None

    def feature_grids(self, encoded: Any, inputs: dict[str, Any], model: PreTrainedModel) -> list[torch.Tensor]:
        raise ValueError(
            "blip2 is a plain baseline: its Q-Former queries have no patch grid, so the overlap loss "
            "cannot be used (set adapt.overlap_loss_weight: 0)"
        )

    def image_token_counts(self, inputs: dict[str, Any], model: PreTrainedModel) -> list[int]:
        return [int(model.config.num_query_tokens)] * int(inputs["pixel_values"].shape[0])

    def forward_kwargs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"pixel_values": inputs["pixel_values"]}
