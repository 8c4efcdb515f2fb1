"""``AdaptGenerator``: answers from an adapted VLM, an :class:`~cora.inference.AnswerGenerator` like
``cora.inference.PanoramaGenerator`` (``cora eval``, ``cora generate``, ``cora serve``).

Each panorama is shown in the run's input mode, the prompt is the family's chat template (generation
prompt), decoding follows the config's ``evaluation:`` section (greedy by default) and stops at the
family's end-of-turn token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cora.adapt.encode import EncodedBatch, build_messages, encode_batch
from cora.adapt.inputs import PanoramaInputs, native_geometry
from cora.adapt.runtime import PanoramaAdapter
from cora.config import CoraConfig, load_config
from cora.inference import DecodingOptions, GeneratorBase, UnsupportedPrompt
from cora.inference.protocols import Prompt
from cora.processors.geometry import ViewGeometry


class AdaptGenerator(GeneratorBase):
    """Generate text for (panorama, query) pairs with a :class:`PanoramaAdapter` (an adapted HF VLM).

    ``inputs`` shows a panorama to the VLM (``PanoramaInputs(adapt.input_mode, ...)``); images are
    anything it accepts (paths, arrays, PIL images, bytes).
    """

    def __init__(
        self,
        model: PanoramaAdapter,
        inputs: PanoramaInputs,
        system_prompt: str | None = None,
        options: DecodingOptions | None = None,
        batch_size: int = 8,
    ) -> None:
        self.model = model.eval()
        self.inputs = inputs
        self.system_prompt = system_prompt
        self.options = options or DecodingOptions()
        self.batch_size = batch_size
        self.tokenizer = model.tokenizer
        stops = {self.tokenizer.convert_tokens_to_ids(model.family.end_of_turn), self.tokenizer.eos_token_id}
        self.stop_token_ids = sorted(s for s in stops if s is not None)

    @classmethod
    def from_model(cls, model: PanoramaAdapter, config: CoraConfig) -> AdaptGenerator:
        """From a built adapted model and its config (input mode, system prompt, decoding options)."""
        cfg = config.adapt
        if cfg is None:
            raise ValueError("AdaptGenerator needs a config with an adapt: section")
        inputs = PanoramaInputs(cfg.input_mode, config.image_processing, native_height=cfg.native_height)
        options = DecodingOptions.from_config(config.evaluation)
        return cls(model, inputs, cfg.system_prompt or config.data.system_prompt, options, config.evaluation.batch_size)

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
            allow = (config or run_config).evaluation.allow_incomplete_run
            model = load_adapt_run(run_dir, run_config, allow_incomplete=allow)
        except RunError as exc:
            raise RunLoadError(f"{exc} (train it first: `cora train --config {config_file}`)") from exc
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls.from_model(model, config or run_config)

    # -- what the model sees ------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.adapted.model.parameters()).device

    @property
    def view_geometries(self) -> list[ViewGeometry]:
        if self.inputs.views is not None:
            return list(self.inputs.views.geometries)
        height = self.inputs.native_height  # native mode: the whole ERP, resized to 2h × h
        return [native_geometry(2 * height, height)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def prompt_tokens(self, query: Prompt) -> int:
        """Tokens of the family's generation prompt, one image placeholder per view as the template writes it
        (the processor later expands each into the image's tokens)."""
        messages = build_messages(len(self.view_geometries), _question(query), system_prompt=self.system_prompt)
        text = self.model.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _count_vision_tokens(self) -> int:
        """How many tokens the processor's expansion of the image placeholders adds."""
        batch = self.prepare([np.zeros((64, 128, 3), np.uint8)], ["x"])
        return int(batch.inputs["attention_mask"][0].sum()) - self.prompt_tokens("x")

    def prepare(self, images: Sequence[Any], queries: Sequence[Prompt]) -> EncodedBatch:
        """The family processor's left-padded prompt batch (``input_ids [B, T]``, pixels) on the model's device."""
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images but {len(queries)} queries")
        queries = [_question(q) for q in queries]
        adapted = self.model.adapted
        panos = [self.inputs(image) for image in images]
        batch = encode_batch(adapted.family, adapted.processor, panos, list(queries), None, self.system_prompt)
        device = self.device
        batch.inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.inputs.items()}
        return batch

    def generate_batch(self, batch: EncodedBatch, **kwargs: Any) -> torch.Tensor:
        """New token ids ``[B, N]`` (``AdaptedVLM.generate`` runs without autograd)."""
        return self.model.adapted.generate(batch, **kwargs)


def _question(query: Prompt) -> str:
    """An adapted VLM answers single questions: a conversation with history or its own system prompt is
    refused (:class:`UnsupportedPrompt`, a 400 from the server) rather than silently cut to its last question."""
    if isinstance(query, str):
        return query
    if query.history or query.system_prompt is not None:
        raise UnsupportedPrompt("this model answers single questions (no system message or earlier turns)")
    return query.query
