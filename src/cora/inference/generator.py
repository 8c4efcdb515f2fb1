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
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from cora.processors.text import ChatFormatter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingOptions:
    """Greedy by default (Qwen3's own generation config samples; we do not unless asked)."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    use_cache: bool = True

    @classmethod
    def from_config(cls, ev: Any) -> DecodingOptions:
        """From an ``EvaluationConfig``."""
        return cls(
            max_new_tokens=ev.max_new_tokens,
            do_sample=ev.do_sample,
            temperature=ev.temperature,
            top_p=ev.top_p,
            top_k=ev.top_k,
            repetition_penalty=ev.repetition_penalty,
        )

    def generation_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "use_cache": self.use_cache,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            # neutralise sampling defaults a checkpoint's generation_config may carry (Qwen3's does)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


def stream_text(tokenizer: Any, run: Callable[[Any], None]) -> Iterator[str]:
    """Run ``run(streamer)`` in a thread and yield its text pieces as they come.

    An error in the generation thread ends the stream and is re-raised in the caller's thread.
    """
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    error: list[BaseException] = []

    def target() -> None:
        try:
            run(streamer)
        except BaseException as exc:  # re-raised below, in the caller's thread
            error.append(exc)
            streamer.end()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if error:
        raise error[0]


class PanoramaGenerator:
    """Generate text for (panorama, query) pairs with a ``PanoramaVLM``.

    ``views``: callable ``views(image or list of images) -> ViewBatch`` (``.pixels``
    ``[V, 3, S, S]`` / ``[B, V, 3, S, S]`` in [0, 1], ``.geometries``), e.g.
    ``PanoramaViews.from_config(cfg.image_processing)``. Images are paths, arrays, PIL
    images or tensors (anything the views accept).
    """

    def __init__(
        self,
        model: Any,
        views: Callable[[Any], Any],
        formatter: ChatFormatter | None = None,
        options: DecodingOptions | None = None,
        batch_size: int = 8,
    ) -> None:
        self.model = model
        self.views = views
        self.formatter = formatter or ChatFormatter(model.tokenizer)
        self.tokenizer = self.formatter.tokenizer
        self.options = options or DecodingOptions()
        self.batch_size = batch_size
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: batched generation needs one")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any, config: Any, batch_size: int | None = None) -> PanoramaGenerator:
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
        cls, run_dir: Any, config: Any | None = None, device: str | None = None, run_loader: Any | None = None
    ) -> PanoramaGenerator:
        """From a trained run folder (``runs/<experiment>``): its exported model and config.

        ``run_loader`` rebuilds a run that has no exported model yet (see ``load_run``).
        """
        from cora.inference.loading import load_run

        model, config = load_run(run_dir, config=config, device=device, run_loader=run_loader)
        return cls.from_model(model, config)

    # -- inputs -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare(self, images: Sequence[Any], queries: Sequence[str]) -> dict[str, Any]:
        """Model inputs for a batch: ``pixel_values [B, V, 3, S, S]``, ``geometries``, left-padded
        ``input_ids`` / ``attention_mask [B, T]``."""
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images but {len(queries)} queries")
        if not images:
            raise ValueError("nothing to generate: no images")
        views = self._views(images)
        prompts = [self.formatter.encode_prompt(q) for q in queries]
        length = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for i, ids in enumerate(prompts):  # left padding: every prompt ends where generation starts
            input_ids[i, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, length - len(ids) :] = 1
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

    def _kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        options = replace(self.options, **overrides) if overrides else self.options
        kwargs = options.generation_kwargs()
        kwargs.update(eos_token_id=self.formatter.stop_token_ids, pad_token_id=self.tokenizer.pad_token_id)
        return kwargs

    # -- generation ---------------------------------------------------------------------
    @torch.inference_mode()
    def generate_ids(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[list[int]]:
        """New token ids per sample, cut at the first stop token (which is not included)."""
        out: list[list[int]] = []
        for start in range(0, len(images), self.batch_size):
            batch = self.prepare(images[start : start + self.batch_size], queries[start : start + self.batch_size])
            ids = self.model.generate(**batch, **self._kwargs(options))
            out.extend(self._cut(row) for row in ids.tolist())
        return out

    def _cut(self, row: list[int]) -> list[int]:
        """``PanoramaVLM.generate`` returns only new tokens (it decodes from embeddings); a finished
        row of a batch is padded after its stop token."""
        stops = set(self.formatter.stop_token_ids)
        for i, token in enumerate(row):
            if token in stops:
                return row[:i]
        pad = self.tokenizer.pad_token_id
        while row and row[-1] == pad and pad not in stops:
            row = row[:-1]
        return row

    def generate(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[str]:
        """One answer per (image, query); ``options`` override :class:`DecodingOptions` fields."""
        return [self.formatter.decode(ids) for ids in self.generate_ids(images, queries, **options)]

    def __call__(self, image: Any, query: str, **options: Any) -> str:
        return self.generate([image], [query], **options)[0]

    def stream(self, image: Any, query: str, **options: Any) -> Iterator[str]:
        """Yield the answer's text as it is generated (transformers' ``TextIteratorStreamer``)."""
        batch = self.prepare([image], [query])
        kwargs = self._kwargs(options)

        def run(streamer: Any) -> None:
            with torch.inference_mode():
                self.model.generate(**batch, **kwargs, streamer=streamer)

        yield from stream_text(self.tokenizer, run)
