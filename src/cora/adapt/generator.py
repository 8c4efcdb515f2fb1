"""``AdaptGenerator``: answers from an adapted VLM, shaped like ``cora.inference.PanoramaGenerator``.

Used by ``cora eval`` (``generate(images, queries) -> list[str]``) and ``cora generate``
(``generate_ids``, ``formatter.decode``, ``stream``). Each panorama is shown in the run's input mode,
the prompt is the family's chat template (generation prompt), decoding is greedy by default and stops
at the family's end-of-turn token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from cora.adapt.encode import EncodedBatch, encode_batch
from cora.adapt.inputs import PanoramaInputs
from cora.adapt.runtime import PanoramaAdapter
from cora.config import CoraConfig, load_config
from cora.inference.generator import stream_text


class AnswerDecoder:
    """Token ids → answer text (the ``formatter.decode`` of the generator protocol)."""

    def __init__(self, tokenizer: Any, stop_token_ids: list[int]) -> None:
        self.tokenizer, self.stop_token_ids = tokenizer, stop_token_ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()


class AdaptGenerator:
    def __init__(
        self,
        model: PanoramaAdapter,
        inputs: PanoramaInputs,
        system_prompt: str | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        batch_size: int = 8,
    ) -> None:
        self.model = model.eval()
        self.inputs = inputs
        self.system_prompt = system_prompt
        self.generation_kwargs = generation_kwargs or {}
        self.batch_size = batch_size
        tok = model.tokenizer
        stops = {tok.convert_tokens_to_ids(model.family.end_of_turn), tok.eos_token_id}
        self.formatter = AnswerDecoder(tok, sorted(s for s in stops if s is not None))
        self.tokenizer = tok

    @classmethod
    def from_model(cls, model: PanoramaAdapter, config: CoraConfig) -> AdaptGenerator:
        ev, cfg = config.evaluation, config.adapt
        kwargs: dict[str, Any] = {
            "max_new_tokens": ev.max_new_tokens,
            "do_sample": ev.do_sample,
            "repetition_penalty": ev.repetition_penalty,
        }
        if ev.do_sample:
            kwargs |= {"temperature": ev.temperature, "top_p": ev.top_p, "top_k": ev.top_k}
        inputs = PanoramaInputs(cfg.input_mode, config.image_processing, native_height=cfg.native_height)
        return cls(model, inputs, cfg.system_prompt or config.data.system_prompt, kwargs, ev.batch_size)

    @classmethod
    def from_run(
        cls, run_dir: str | Path, config: CoraConfig | None = None, device: str | None = None
    ) -> AdaptGenerator:
        """From a run folder (its config and completed stages), on ``device`` (default: CUDA when available)."""
        from cora.adapt.run import load_adapt_run
        from cora.inference.loading import RunLoadError
        from cora.training.runner import RunError

        config_file = Path(run_dir) / "config.yaml"
        run_config = load_config(config_file)
        try:
            model = load_adapt_run(run_dir, run_config)
        except RunError as exc:
            raise RunLoadError(f"{exc} (train it first: `cora train --config {config_file}`)") from exc
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls.from_model(model, config or run_config)

    def prepare(self, images: Sequence[Any], queries: Sequence[str]) -> EncodedBatch:
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images but {len(queries)} queries")
        adapted = self.model.adapted
        panos = [self.inputs(image) for image in images]
        batch = encode_batch(adapted.family, adapted.processor, panos, list(queries), None, self.system_prompt)
        device = next(adapted.model.parameters()).device
        batch.inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.inputs.items()}
        return batch

    def _kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"eos_token_id": self.formatter.stop_token_ids} | self.generation_kwargs | options

    def generate_ids(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[list[int]]:
        """New token ids per sample, cut before the first stop token."""
        stops, pad = set(self.formatter.stop_token_ids), self.tokenizer.pad_token_id
        out: list[list[int]] = []
        for start in range(0, len(images), self.batch_size):
            batch = self.prepare(images[start : start + self.batch_size], queries[start : start + self.batch_size])
            for row in self.model.adapted.generate(batch, **self._kwargs(options)).tolist():
                cut = next((i for i, t in enumerate(row) if t in stops), len(row))
                row = row[:cut]
                while row and row[-1] == pad:
                    row = row[:-1]
                out.append(row)
        return out

    def generate(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[str]:
        return [self.formatter.decode(ids) for ids in self.generate_ids(images, queries, **options)]

    def __call__(self, image: Any, query: str, **options: Any) -> str:
        return self.generate([image], [query], **options)[0]

    def stream(self, image: Any, query: str, **options: Any) -> Iterator[str]:
        """Yield the answer's text as it is generated."""
        batch = self.prepare([image], [query])
        kwargs = self._kwargs(options)
        yield from stream_text(
            self.tokenizer, lambda streamer: self.model.adapted.generate(batch, **kwargs, streamer=streamer)
        )
