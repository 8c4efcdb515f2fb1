"""``PanoramaGenerator``: answers about panoramas from a trained model (batch, streaming, greedy by default).

The model computes each panorama's vision tokens once and decodes with a KV cache
(``PanoramaVLM.generate``); this class turns images and queries into that call: views,
chat-template prompts (left padded for batches), stop tokens, decoding options.

>>> gen = PanoramaGenerator.from_run("runs/cora-tiny")
>>> gen.generate(["pano.jpg"], ["Describe the panorama."])      # ['A lake ...']
>>> for piece in gen.stream("pano.jpg", "What is on the left?"): print(piece, end="")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from cora.inference.base import GeneratorBase, stream_text
from cora.inference.decoding import DecodingOptions
from cora.inference.protocols import Conversation, Prompt
from cora.model.fusion import left_padded
from cora.processors.geometry import ViewGeometry
from cora.processors.text import ChatFormatter

if TYPE_CHECKING:
    from cora.config import CoraConfig
    from cora.inference.loading import RunLoader

__all__ = ["DecodingOptions", "PanoramaGenerator", "PanoramaViewsFn", "stream_text"]

logger = logging.getLogger(__name__)


class PanoramaViewsFn(Protocol):
    """``views(image or list of images) -> ViewBatch`` for fixed ``geometries`` (e.g. ``PanoramaViews``)."""

    geometries: list[ViewGeometry]

    def __call__(self, images: Any) -> Any: ...


class PanoramaGenerator(GeneratorBase):
    """Generate text for (panorama, query) pairs with a ``PanoramaVLM``.

    ``views``: callable ``views(image or list of images) -> ViewBatch`` (``.pixels``
    ``[V, 3, S, S]`` / ``[B, V, 3, S, S]`` in [0, 1], ``.geometries``), e.g.
    ``PanoramaViews.from_config(cfg.image_processing)``. Images are paths, arrays, PIL
    images or tensors (anything the views accept).
    """

    def __init__(
        self,
        model: Any,
        views: PanoramaViewsFn,
        formatter: ChatFormatter | None = None,
        options: DecodingOptions | None = None,
        batch_size: int = 8,
    ) -> None:
        self.model = model
        self.views: Callable[[Any], Any] = views
        # kept apart from ``views``, which callers may wrap (the demo's blind run zeroes its pixels)
        self._geometries = list(views.geometries)
        self.formatter = formatter or ChatFormatter(model.tokenizer)
        self.tokenizer = self.formatter.tokenizer
        self.stop_token_ids = self.formatter.stop_token_ids
        self.options = options or DecodingOptions()
        self.batch_size = batch_size
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: batched generation needs one")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any, config: CoraConfig, batch_size: int | None = None) -> PanoramaGenerator:
        """From a built model and its ``CoraConfig`` (views, system prompt, decoding options)."""
        from cora.processors.views import PanoramaViews

        formatter = ChatFormatter(
            model.tokenizer, system_prompt=config.data.system_prompt, vision_token=config.models.vision_token
        )
        return cls(
            model,
            PanoramaViews.from_config(config.image_processing),
            formatter,
            DecodingOptions.from_config(config.evaluation),
            batch_size or config.evaluation.batch_size,
        )

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike[str],
        config: CoraConfig | None = None,
        device: str | None = None,
        run_loader: RunLoader | None = None,
    ) -> PanoramaGenerator:
        """From a trained run folder (``runs/<experiment>``): its exported model and config.

        ``run_loader`` rebuilds a run that has no exported model yet (see ``load_run``).
        """
        from cora.inference.loading import load_run

        model, config = load_run(run_dir, config=config, device=device, run_loader=run_loader)
        return cls.from_model(model, config)

    # -- what the model sees ------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def view_geometries(self) -> list[ViewGeometry]:
        return list(self._geometries)

    def decode(self, ids: Sequence[int]) -> str:
        return self.formatter.decode(ids)

    def prompt_tokens(self, query: Prompt) -> int:
        return len(self._encode(query))

    def _encode(self, query: Prompt) -> list[int]:
        if isinstance(query, Conversation):
            return self.formatter.encode_prompt(query.query, query.history, query.system_prompt)
        return self.formatter.encode_prompt(query)

    def _count_vision_tokens(self) -> int:
        """The vision tokens that replace the one placeholder (resampler tokens, separators ...), from the
        stitching plan (no forward)."""
        return self.model.num_vision_tokens(self._geometries) - 1

    def prepare(self, images: Sequence[Any], queries: Sequence[Prompt]) -> dict[str, Any]:
        """Model inputs for a batch: ``pixel_values [B, V, 3, S, S]``, ``geometries``, left-padded
        ``input_ids`` / ``attention_mask [B, T]``."""
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images but {len(queries)} queries")
        if not images:
            raise ValueError("nothing to generate: no images")
        views = self._views(images)
        input_ids, attention_mask = left_padded([self._encode(q) for q in queries], self.tokenizer.pad_token_id)
        device = self.device
        return {
            "pixel_values": views.pixels.to(device),
            "geometries": views.geometries,
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
        }

    def _views(self, images: Sequence[Any]) -> Any:
        """Views of each distinct panorama once (several queries about one file share its views)."""
        refs = [str(im) if isinstance(im, str | os.PathLike) else None for im in images]
        if None in refs or len(set(refs)) == len(refs):
            return self.views(list(images))
        unique = list(dict.fromkeys(refs))
        views = self.views(unique)
        views.pixels = views.pixels[torch.tensor([unique.index(r) for r in refs])]
        return views

    @torch.inference_mode()
    def generate_batch(self, batch: dict[str, Any], **kwargs: Any) -> torch.Tensor:
        """``PanoramaVLM.generate`` returns only the new tokens ``[B, N]`` (it decodes from embeddings)."""
        return self.model.generate(**batch, **kwargs)
