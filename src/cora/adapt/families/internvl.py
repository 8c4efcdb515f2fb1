"""InternVL3 (HF format): InternViT, pixel-shuffle 0.5 + MLP projector (the aligner), Qwen2 LLM with 1-D RoPE."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import (
    GotOcr2ImageProcessorPil,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
)

from cora.adapt.families.base import VLMFamily, image_only
from cora.adapt.tokenizer import family_tokenizer

# InternVL3-hf's template (image and text items, without the default system prompt): one
# <IMG_CONTEXT> per image, which the processor expands to <img><IMG_CONTEXT>×N</img>.
INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")
PATCH = 8


class InternVLFamily(VLMFamily):
    name: ClassVar[str] = "internvl"
    template: ClassVar[str] = INTERNVL_TEMPLATE
    rope: ClassVar = "1d"
    aligner_modules: ClassVar[tuple[str, ...]] = ("multi_modal_projector",)

    @property
    def model_class(self) -> type[PreTrainedModel]:
        return InternVLForConditionalGeneration

    def offline_processor(self, image_size: int) -> ProcessorMixin:
        tok = family_tokenizer(
            SPECIALS,
            INTERNVL_TEMPLATE,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            start_image_token="<img>",
            end_image_token="</img>",
            context_image_token="<IMG_CONTEXT>",
            video_token="<video>",
        )
        images = GotOcr2ImageProcessorPil(
            size={"height": image_size, "width": image_size},
            crop_to_patches=True,
            max_patches=6,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
        seq = (image_size // PATCH // 2) ** 2  # pixel shuffle 0.5 merges 2×2 patches
        return image_only(InternVLProcessor)(
            image_processor=images, tokenizer=tok, image_seq_length=seq, chat_template=INTERNVL_TEMPLATE
        )

    def image_token_id(self, processor: ProcessorMixin) -> int:
        return int(processor.image_token_id)

    def tiny_config(self, processor: ProcessorMixin, image_size: int) -> PretrainedConfig:
        tok = processor.tokenizer
        return InternVLConfig(
            vision_config={
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "image_size": [image_size, image_size],
                "patch_size": [PATCH, PATCH],
            },
            text_config={
                "model_type": "qwen2",
                "vocab_size": len(tok),
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 4096,
                "bos_token_id": None,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
                "tie_word_embeddings": True,
            },
            image_token_id=processor.image_token_id,
            image_seq_length=processor.image_seq_length,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )

    def encode_images(self, model: PreTrainedModel, inputs: dict[str, Any]) -> Any:
        return model.model.get_image_features(inputs["pixel_values"], return_dict=True)

    def extra_inputs(self, processor: ProcessorMixin, images: list[Any]) -> dict[str, Any]:
        # InternVLProcessor drops num_patches from its output; the health checks need each image's patch count.
        sizes = [image.shape[:2] for image in images]
        patches = processor._get_num_multimodal_tokens(image_sizes=sizes, images_kwargs={"crop_to_patches": True})
        return {"num_patches": torch.tensor(patches["num_image_patches"])}

    def _patches_per_image(self, inputs: dict[str, Any]) -> list[int]:
        return inputs["num_patches"].tolist()

    def feature_grids(self, encoded: Any, inputs: dict[str, Any], model: PreTrainedModel) -> list[torch.Tensor]:
        feats = encoded.pooler_output  # [patches, seq, D]; pixel shuffle keeps raster order
        side = round(feats.shape[1] ** 0.5)
        grids, start = [], 0
        for n in self._patches_per_image(inputs):
            # A multi-patch (dynamically tiled) image is represented by its last patch, the whole-image thumbnail.
            grids.append(feats[start + n - 1].reshape(side, side, -1))
            start += n
        return grids

    def image_token_counts(self, inputs: dict[str, Any], model: PreTrainedModel) -> list[int]:
        patches = self._patches_per_image(inputs)
        if sum(patches) != int(inputs["pixel_values"].shape[0]):
            raise ValueError(
                f"the images have {sum(patches)} patches but pixel_values has {int(inputs['pixel_values'].shape[0])}"
            )
        return [n * int(model.config.image_seq_length) for n in patches]
