"""What CORA needs to know about one off-the-shelf VLM family.

A family names its HF class, builds a tiny random offline model and an offline processor
(image processor + a tokenizer with the family's special tokens + the family's chat template,
so the processor itself inserts and expands the image placeholders), and exposes the VLM's
own vision features per image on their patch grid for the overlap loss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from transformers import PretrainedConfig, PreTrainedModel, ProcessorMixin

from cora.utils.rng import seeded

RopeKind = Literal["mrope", "1d", "none"]


class AdaptConfigError(ValueError):
    """An ``adapt:`` setting that cannot work (unknown family, input mode the family cannot take, …)."""


class VLMFamily(ABC):
    """One VLM family. Subclasses are stateless; ``get_family`` returns a fresh instance of the registered class."""

    name: ClassVar[str]
    #: ``mrope``: Qwen's 3-D (t, h, w) ids; ``1d``: ordinary RoPE ids; ``none``: PanoRoPE unsupported.
    rope: ClassVar[RopeKind] = "1d"
    #: True when one turn may carry several images (multi-view input modes).
    multi_image: ClassVar[bool] = True
    #: False when the HF forward cannot take precomputed ``mm_encoder_outputs`` (pixels are passed instead).
    precomputed: ClassVar[bool] = True
    #: module-name suffixes of the aligner (projector/merger): trained in stage A, saved whole in stage B.
    aligner_modules: ClassVar[tuple[str, ...]] = ()
    #: prefix of the language model's module names (LoRA targets its linear layers, never ``lm_head``).
    language_model_prefix: ClassVar[str] = "model.language_model."
    #: the family's chat template (image + text items); used offline and when a checkpoint ships none (BLIP-2)
    template: ClassVar[str]
    #: text that opens the assistant's answer in the rendered chat, and the end-of-turn token.
    assistant_header: ClassVar[str] = "<|im_start|>assistant\n"
    end_of_turn: ClassVar[str] = "<|im_end|>"

    @property
    @abstractmethod
    def model_class(self) -> type[PreTrainedModel]:
        """The HF ``...ForConditionalGeneration`` class."""

    @abstractmethod
    def tiny_config(self, processor: ProcessorMixin, image_size: int) -> PretrainedConfig:
        """A tiny randomly initialisable config matching ``processor`` (token ids, patch sizes)."""

    @abstractmethod
    def offline_processor(self, image_size: int) -> ProcessorMixin:
        """The family's processor built offline (no hub)."""

    def image_token_id(self, processor: ProcessorMixin) -> int:
        return int(processor.image_token_id)

    @abstractmethod
    def encode_images(self, model: PreTrainedModel, inputs: dict[str, Any]) -> Any:
        """The family's ``get_image_features`` output for ``inputs`` (fed back as ``mm_encoder_outputs``)."""

    @abstractmethod
    def feature_grids(self, encoded: Any, inputs: dict[str, Any], model: PreTrainedModel) -> list[torch.Tensor]:
        """Per image, the aligner output on its token grid: list of ``[h, w, D]`` (LLM hidden size D)."""

    @abstractmethod
    def image_token_counts(self, inputs: dict[str, Any], model: PreTrainedModel) -> list[int]:
        """How many placeholder tokens each attached image must expand to (from the grid sizes)."""

    def token_grids(self, inputs: dict[str, Any], model: PreTrainedModel) -> list[tuple[int, int]]:
        """Per image, the ``(h, w)`` layout of its LLM tokens (square grids; a multi-patch image is one row)."""
        grids = []
        for count in self.image_token_counts(inputs, model):
            side = round(count**0.5)
            grids.append((side, side) if side * side == count else (1, count))
        return grids

    def extra_inputs(self, processor: ProcessorMixin, images: list[Any]) -> dict[str, Any]:
        """Facts about the processed images the processor does not return (kept in the batch, not fed to HF)."""
        return {}

    def forward_kwargs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The processor outputs the LM forward takes besides ids/mask/pixels (``image_grid_thw`` ...)."""
        return {}

    def _init_tiny(self, model: PreTrainedModel) -> None:  # noqa: B027 (optional hook)
        """Fix up a random tiny model where the HF init leaves a real checkpoint's trained weight at zero."""

    def build_tiny(self, image_size: int = 64, seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
        """A random tiny model and its processor (tests, dry runs)."""
        processor = self.offline_processor(image_size)
        config = self.tiny_config(processor, image_size)
        with seeded(seed):
            model = self.model_class(config)
            self._init_tiny(model)
        model.eval()
        return model, processor


_IMAGE_ONLY: dict[type, type] = {}


def image_only(processor_cls: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """``processor_cls`` without its video processor.

    A real checkpoint's processor loads its video processor too, which needs torchvision; the
    offline tiny processors are image-only (the installed transformers type-checks every
    sub-processor, so ``video_processor=None`` is refused). Same ``__call__``, same expansion.
    """
    if processor_cls not in _IMAGE_ONLY:

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            processor_cls.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        name = f"{processor_cls.__name__}ImageOnly"
        _IMAGE_ONLY[processor_cls] = type(name, (processor_cls,), {"__init__": __init__, "__module__": __name__})
    return _IMAGE_ONLY[processor_cls]


def token_runs(ids: torch.Tensor, token_id: int) -> list[tuple[int, int]]:
    """``[start, end)`` of every maximal run of ``token_id`` in the 1-D ``ids`` (one run per expanded image)."""
    hit = (ids == token_id).int()
    edges = torch.diff(torch.cat([hit.new_zeros(1), hit, hit.new_zeros(1)]))
    starts = torch.nonzero(edges == 1).flatten().tolist()
    ends = torch.nonzero(edges == -1).flatten().tolist()
    return list(zip(starts, ends, strict=True))
