"""``GeneratorBase``: the generation loop shared by every :class:`~cora.inference.protocols.AnswerGenerator`.

A subclass says how one batch is prepared and run (:meth:`GeneratorBase.prepare`,
:meth:`GeneratorBase.generate_batch`), how ids become text and what the model sees; batching,
decoding options, stop tokens, streaming and ``describe`` are written here once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any

import torch

from cora.inference.decoding import DecodingOptions
from cora.inference.protocols import GeneratorInfo, Prompt, TokenSink
from cora.processors.geometry import ViewGeometry
from cora.processors.text import cut_at_stop


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


class GeneratorBase(ABC):
    """Batched and streamed generation on top of a model-specific :meth:`prepare` + :meth:`generate_batch`.

    Subclasses set ``options`` (the default :class:`DecodingOptions`), ``batch_size``, ``tokenizer``
    (a Hugging Face tokenizer: pad id, streaming) and ``stop_token_ids`` (ids that end an answer).
    """

    options: DecodingOptions
    batch_size: int
    tokenizer: Any
    stop_token_ids: list[int]
    _vision_tokens: int | None = None

    # -- what a model provides ----------------------------------------------------------
    @abstractmethod
    def prepare(self, images: Sequence[Any], queries: Sequence[Prompt]) -> Any:
        """The model inputs of one batch of (image, query) pairs, on the model's device."""

    @abstractmethod
    def generate_batch(self, batch: Any, **kwargs: Any) -> torch.Tensor:
        """New token ids ``[B, N]`` for a prepared batch (``kwargs``: transformers' ``generate`` options,
        with ``streamer=`` when streaming). Runs without autograd."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Token ids → the answer's text."""

    @abstractmethod
    def prompt_tokens(self, query: Prompt) -> int:
        """Tokens of the templated prompt for ``query``, image placeholders as written."""

    @abstractmethod
    def _count_vision_tokens(self) -> int:
        """Tokens a panorama adds beyond its placeholders (measured once, see :meth:`vision_tokens`)."""

    def vision_tokens(self) -> int:
        """Tokens a panorama adds to a prompt beyond its placeholders as written (measured on the first
        call with a blank panorama, then remembered: it depends on the views and the model, not the image)."""
        if self._vision_tokens is None:
            self._vision_tokens = self._count_vision_tokens()
        return self._vision_tokens

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def view_geometries(self) -> list[ViewGeometry]:
        """Where each image the model sees of a panorama looks."""

    # -- shared -------------------------------------------------------------------------
    def _kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """``generate`` keyword arguments: the default options with ``overrides`` (DecodingOptions fields)."""
        options = replace(self.options, **overrides) if overrides else self.options
        kwargs = options.generation_kwargs()
        kwargs.update(eos_token_id=list(self.stop_token_ids), pad_token_id=self.tokenizer.pad_token_id)
        return kwargs

    def generate_ids(self, images: Sequence[Any], queries: Sequence[Prompt], **options: Any) -> list[list[int]]:
        """New token ids per (image, query), cut at the first stop token (which is not included)."""
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images but {len(queries)} queries")
        kwargs = self._kwargs(options)
        out: list[list[int]] = []
        for start in range(0, len(images), self.batch_size):
            batch = self.prepare(images[start : start + self.batch_size], queries[start : start + self.batch_size])
            out.extend(self._cut(row) for row in self.generate_batch(batch, **kwargs).tolist())
        return out

    def _cut(self, row: list[int]) -> list[int]:
        return cut_at_stop(row, set(self.stop_token_ids), self.tokenizer.pad_token_id)

    def generate_rows(
        self, images: Sequence[Any], queries: Sequence[Prompt], sinks: Sequence[TokenSink], **options: Any
    ) -> list[list[int]]:
        """One batch (any size), each row's new tokens handed to its sink as they are generated.

        A row whose sink is cancelled stops at the next token (transformers' per-row stopping); when every
        row is finished or cancelled the whole generation ends.
        """
        from transformers import StoppingCriteriaList

        if not len(images) == len(queries) == len(sinks):
            raise ValueError(f"{len(images)} images, {len(queries)} queries and {len(sinks)} sinks")
        kwargs = self._kwargs(options)
        kwargs["streamer"] = _RowStreamer(sinks, self.stop_token_ids)
        kwargs["stopping_criteria"] = StoppingCriteriaList([_CancelledRows(sinks)])
        rows = self.generate_batch(self.prepare(images, queries), **kwargs).tolist()
        return [self._cut(row) for row in rows]

    def generate(self, images: Sequence[Any], queries: Sequence[Prompt], **options: Any) -> list[str]:
        """One answer per (image, query); ``options`` override :class:`DecodingOptions` fields."""
        return [self.decode(ids) for ids in self.generate_ids(images, queries, **options)]

    def __call__(self, image: Any, query: Prompt, **options: Any) -> str:
        return self.generate([image], [query], **options)[0]

    def stream(self, image: Any, query: Prompt, **options: Any) -> Iterator[str]:
        """Yield the answer's text as it is generated (transformers' ``TextIteratorStreamer``)."""
        batch = self.prepare([image], [query])
        kwargs = self._kwargs(options)
        yield from stream_text(self.tokenizer, lambda streamer: self.generate_batch(batch, **kwargs, streamer=streamer))

    def describe(self) -> GeneratorInfo:
        geometries = self.view_geometries
        try:
            device: str | None = str(self.device)
        except StopIteration:  # a model without parameters
            device = None
        return {
            "device": device,
            "views": len(geometries),
            "view_kinds": sorted({g.kind for g in geometries}),
            "decoding": asdict(self.options),
        }


class _RowStreamer:
    """transformers' streamer interface for a batch: each step's tokens ``[B]`` go to their rows' sinks.

    The first ``put`` is the prompt (skipped); a row is done after its first stop token or once cancelled
    (the batch keeps stepping for the other rows, padding finished ones).
    """

    def __init__(self, sinks: Sequence[TokenSink], stop_token_ids: Sequence[int]) -> None:
        self.sinks = list(sinks)
        self.stops = set(stop_token_ids)
        self.done = [False] * len(self.sinks)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for i, token in enumerate(value.reshape(len(self.sinks), -1)[:, -1].tolist()):
            if self.done[i]:
                continue
            if token in self.stops or self.sinks[i].cancelled():
                self.done[i] = True
            else:
                self.sinks[i].token(token)

    def end(self) -> None:
        """Nothing is held back: every token was handed on when it came."""


class _CancelledRows:
    """A stopping criterion: ``[B]`` bools, true for rows whose sink is cancelled."""

    def __init__(self, sinks: Sequence[TokenSink]) -> None:
        self.sinks = list(sinks)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.tensor([sink.cancelled() for sink in self.sinks], dtype=torch.bool, device=input_ids.device)
