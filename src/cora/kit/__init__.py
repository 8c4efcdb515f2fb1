"""The offline tiny-model kit: tokenizer, vision tower and LLM saved as HF folders."""

from cora.kit.build import KitPaths, build_kit
from cora.kit.tokenizer import SPECIAL_TOKENS, VISION_TOKEN, kit_chat_template, train_tokenizer

__all__ = ["SPECIAL_TOKENS", "VISION_TOKEN", "KitPaths", "build_kit", "kit_chat_template", "train_tokenizer"]
