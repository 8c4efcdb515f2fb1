"""``AdaptGenerator``: answers from an adapted VLM for ``cora eval`` (the evaluation runner's batch protocol).

``generate(images, queries) -> list[str]``: each panorama shown in the run's input mode, the prompt
rendered by the family's chat template (generation prompt), greedy by default, decoded up to the
end-of-turn token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cora.adapt.encode import encode_batch
from cora.adapt.inputs import PanoramaInputs
from cora.adapt.runtime import PanoramaAdapter
from cora.config import CoraConfig, load_config


class AdaptGenerator:
    def __init__(self, model: PanoramaAdapter, inputs: PanoramaInputs, system_prompt: str | None = None,
                 generation_kwargs: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.inputs = inputs
        self.system_prompt = system_prompt
        self.generation_kwargs = generation_kwargs or {}

    @classmethod
    def from_model(cls, model: PanoramaAdapter, config: CoraConfig) -> AdaptGenerator:
        ev, cfg = config.evaluation, config.adapt
        kwargs: dict[str, Any] = {"max_new_tokens": ev.max_new_tokens, "do_sample": ev.do_sample,
                                  "repetition_penalty": ev.repetition_penalty}
        if ev.do_sample:
            kwargs |= {"temperature": ev.temperature, "top_p": ev.top_p, "top_k": ev.top_k}
        tok = model.tokenizer
        stops = {tok.convert_tokens_to_ids(model.family.end_of_turn), tok.eos_token_id}
        kwargs["eos_token_id"] = sorted(s for s in stops if s is not None)
        inputs = PanoramaInputs(cfg.input_mode, config.image_processing, native_height=cfg.native_height)
        return cls(model, inputs, cfg.system_prompt or config.data.system_prompt, kwargs)

    @classmethod
    def from_run(cls, run_dir: str | Path, config: CoraConfig | None = None) -> AdaptGenerator:
        from cora.adapt.run import load_adapt_run

        run_config = load_config(Path(run_dir) / "config.yaml")
        model = load_adapt_run(run_dir, run_config)
        return cls.from_model(model, config or run_config)

    def generate(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[str]:
        adapted = self.model.adapted
        panos = [self.inputs(image) for image in images]
        batch = encode_batch(adapted.family, adapted.processor, panos, list(queries), None, self.system_prompt)
        device = next(adapted.model.parameters()).device
        batch.inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.inputs.items()}
        new = adapted.generate(batch, **(self.generation_kwargs | options))
        return [text.strip() for text in adapted.processor.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def __call__(self, image: Any, query: str, **options: Any) -> str:
        return self.generate([image], [query], **options)[0]
