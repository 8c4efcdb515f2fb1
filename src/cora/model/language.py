"""The language model: any HF causal LM, the ``<|vision|>`` token, optional LoRA (PEFT)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from cora.config.base import ArchSpec
from cora.model.arch import hf_config_from_arch

logger = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LanguageModel(nn.Module):
    """An HF causal LM fed with ``inputs_embeds``; ``<|vision|>`` rows are replaced before it sees them."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase | None, vision_token: str) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.vision_token = vision_token
        self.has_lora = False
        if tokenizer is not None:
            self._ensure_vision_token()

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def vision_token_id(self) -> int | None:
        if self.tokenizer is None:
            return None
        return int(self.tokenizer.convert_tokens_to_ids(self.vision_token))

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        if tok is not None and tok.pad_token_id is not None:
            return int(tok.pad_token_id)
        if tok is not None and tok.eos_token_id is not None:
            return int(tok.eos_token_id)
        return 0

    def _ensure_vision_token(self) -> None:
        tok = self.tokenizer
        if self.vision_token not in tok.get_vocab():
            tok.add_tokens([self.vision_token], special_tokens=True)
            logger.info("added %s to the tokenizer (id %d)", self.vision_token, self.vision_token_id)
        embeddings = self.model.get_input_embeddings()
        old = embeddings.weight.shape[0]
        if len(tok) > old:
            self.model.resize_token_embeddings(len(tok), mean_resizing=False)
            # Deterministic init (the mean row): a rebuilt model gets the same weights, so
            # save/load need not store the whole embedding matrix for one new row.
            with torch.no_grad():
                weight = self.model.get_input_embeddings().weight
                if not weight.is_meta:
                    weight[old:] = weight[:old].mean(dim=0)
                    head = self.model.get_output_embeddings()
                    if head is not None and head.weight is not weight:
                        head.weight[old:] = head.weight[:old].mean(dim=0)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` → ``[B, T, hidden]``; the vision placeholder embeds as padding (it is replaced)."""
        vid = self.vision_token_id
        if vid is not None:
            input_ids = input_ids.masked_fill(input_ids == vid, self.pad_token_id)
        return self.model.get_input_embeddings()(input_ids)

    def apply_lora(
        self,
        r: int = 32,
        alpha: int = 64,
        dropout: float = 0.1,
        target_modules: list[str] | tuple[str, ...] = LORA_TARGETS,
    ) -> None:
        """Inject LoRA adapters in place (PEFT); the base weights stay as they are."""
        if self.has_lora:
            return
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), bias="none"
        )
        inject_adapter_in_model(config, self.model)
        self.has_lora = True
        self.lora_settings = {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": list(target_modules)}

    def merge_lora(self) -> None:
        """Fold the LoRA updates into the base weights and take the adapters out (a model without PEFT)."""
        if not self.has_lora:
            return
        from peft.tuners.lora import LoraLayer

        for name, module in list(self.model.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent, _, child = name.rpartition(".")
                setattr(self.model.get_submodule(parent) if parent else self.model, child, module.get_base_layer())
        self.has_lora = False

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        return self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            **kwargs,
        )


def _torch_dtype(name: str) -> torch.dtype | str | None:
    return {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(name: str, required: bool = True) -> PreTrainedTokenizerBase | None:
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        if required:
            raise FileNotFoundError(f"tokenizer {name!r} could not be loaded (offline, not a folder?): {exc}") from exc
        logger.info("no tokenizer for %s: %s", name, exc)
        return None


def build_language_model(
    name: str,
    arch: ArchSpec | None = None,
    tokenizer_name: str | None = None,
    vision_token: str = "<|vision|>",
    attn_implementation: str = "sdpa",
    dtype: str = "auto",
    meta: bool = False,
) -> LanguageModel:
    """A :class:`LanguageModel` by hub name / folder, or random-init from ``arch``.

    ``meta``: parameters on the meta device (no memory; for parameter counts); the
    tokenizer is then optional.
    """
    tokenizer = load_tokenizer(tokenizer_name or name, required=not meta and arch is None)
    if tokenizer is None and arch is not None and not meta:
        raise FileNotFoundError(
            f"an architecture-only LM needs a tokenizer: set models.tokenizer_name "
            f"({tokenizer_name or name!r} could not be loaded)"
        )
    torch_dtype = _torch_dtype(dtype)
    if arch is not None or meta:
        config = hf_config_from_arch(arch) if arch is not None else AutoConfig.from_pretrained(name)
        config._attn_implementation = attn_implementation
        cfg_dtype = None if torch_dtype == "auto" else torch_dtype
        with torch.device("meta") if meta else torch.device("cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=cfg_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(name, attn_implementation=attn_implementation, dtype=torch_dtype)
    return LanguageModel(model, tokenizer, vision_token)
