"""CORA as a Hugging Face model: ``AutoConfig`` / ``AutoModel`` / ``AutoModelForImageTextToText`` /
``AutoProcessor`` load a saved CORA model (``model_type: "cora"``), ``save_pretrained`` / ``push_to_hub``
write one.

- :class:`CoraHFConfig` (``config.json``) carries the run's config (views, models, prompt) and whether the
  folder holds the trainable weights only (the base models are loaded from their names, checked against
  the fingerprints recorded at save time) or every weight (an export: no base model needed).
- :class:`CoraForImageTextToText` wraps :class:`~cora.model.vlm.PanoramaVLM`; its ``from_pretrained`` /
  ``save_pretrained`` are the native model's own (trainable weights, checksum, base identity), so a folder
  written by ``cora train`` (``<run>/model``) is already an HF model folder. Passing a run folder works too.
- :class:`CoraProcessor`: views + chat template + tokenizer: images and questions → the model's inputs.

The classes are registered with transformers' Auto classes when ``cora`` and transformers are both
imported (``cora/__init__.py``), so ``AutoModel.from_pretrained(folder)`` needs no ``trust_remote_code``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel

from cora.config import CoraConfig, load_config
from cora.model.fusion import left_padded
from cora.model.vlm import SAVED_CONFIG, PanoramaOutput, PanoramaVLM, saved_model_dir
from cora.processors.text import cut_at_stop
from cora.utils.io import atomic_write_json


class CoraHFConfig(PretrainedConfig):
    """``config.json`` of a saved CORA model. ``cora``: the run's config as a dict (``config.yaml``);
    ``weights``: ``"trainable"`` (base models by name) or ``"full"`` (every weight in the folder)."""

    model_type = "cora"

    def __init__(self, cora: dict[str, Any] | None = None, weights: str = "trainable", **kwargs: Any) -> None:
        self.cora = cora or {}
        self.weights = weights
        super().__init__(**kwargs)

    def cora_config(self) -> CoraConfig:
        return CoraConfig.model_validate(self.cora)


def write_hf_config(out: Path, config: CoraConfig, weights: str = "trainable") -> None:
    """``config.json`` beside a saved model (AutoConfig reads its ``model_type``)."""
    hf = CoraHFConfig(cora=config.model_dump(mode="json"), weights=weights, architectures=["CoraForImageTextToText"])
    atomic_write_json(out / "config.json", hf.to_dict())


class CoraForImageTextToText(PreTrainedModel):
    """A :class:`PanoramaVLM` behind transformers' model interface (``self.model``)."""

    config_class = CoraHFConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"

    def __init__(self, config: CoraHFConfig, model: PanoramaVLM | None = None) -> None:
        super().__init__(config)
        self.model = model if model is not None else PanoramaVLM.from_config(config.cora_config().models)

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing: the wrapped model's weights come from its pretrained parts and its saved weights."""

    def forward(self, pixel_values: torch.Tensor, geometries: Any, **kwargs: Any) -> PanoramaOutput:
        """``PanoramaVLM.forward``: ``pixel_values [B, V, 3, S, S]``, the views' geometries, ``input_ids``..."""
        return self.model(pixel_values, geometries, **kwargs)

    @torch.inference_mode()
    def generate(self, pixel_values: torch.Tensor, geometries: Any, input_ids: torch.Tensor, **kwargs: Any):
        """New token ids ``[B, N]`` (``PanoramaVLM.generate``: vision tokens once, KV-cached decoding)."""
        return self.model.generate(pixel_values, geometries, input_ids, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, *args: Any, config: Any = None, **kwargs: Any
    ) -> CoraForImageTextToText:
        """A saved CORA model folder (or a run folder). ``allow_base_mismatch=True`` loads a trainable-weights
        folder on base weights other than those it was saved with (a warning instead of an error)."""
        root = saved_model_dir(pretrained_model_name_or_path) or Path(pretrained_model_name_or_path)
        vlm = PanoramaVLM.from_pretrained(root, allow_base_mismatch=kwargs.pop("allow_base_mismatch", False))
        return cls(CoraHFConfig.from_pretrained(root), vlm).eval()

    def save_pretrained(
        self,
        save_directory: str | Path,
        *args: Any,
        full: bool = False,
        run_config: CoraConfig | None = None,
        **kwargs: Any,
    ) -> None:
        """Trainable weights with the base models' identity (default), or every weight (``full=True``, LoRA
        merged into the LLM): a folder that loads with no base model. ``push_to_hub`` uploads this folder."""
        config = run_config or self.config.cora_config()
        if full:
            save_full(self.model, Path(save_directory), config)
        else:
            self.model.save_pretrained(save_directory, run_config=config)


def save_full(vlm: PanoramaVLM, out: Path, config: CoraConfig) -> Path:
    """A self-contained export: the vision tower and the LLM (LoRA merged into it, with its tokenizer) as
    HF folders inside ``out`` (``vision/``, ``language_model/``), CORA's own parts as the trainable weights;
    ``config.yaml`` names the two folders relative to ``out``. ``vlm`` is changed: its LoRA is merged."""
    out.mkdir(parents=True, exist_ok=True)
    lm = vlm.language_model
    lm.merge_lora()
    vlm.vision.tower.save_pretrained(out / "vision")
    lm.model.save_pretrained(out / "language_model")
    if lm.tokenizer is not None:
        lm.tokenizer.save_pretrained(out / "language_model")
    # the towers' weights now live in their folders: only CORA's own components are "trainable" weights
    vlm.ever_trainable.clear()
    vlm.vision.requires_grad_(False)
    lm.requires_grad_(False)
    local = {"vision_name": "vision", "language_model_name": "language_model", "tokenizer_name": None}
    vlm.config = vlm.config.model_copy(update=local)
    exported = config.model_copy(update={"models": config.models.model_copy(update=local)})
    vlm.save_pretrained(out, run_config=exported)
    write_hf_config(out, exported, weights="full")
    return out


class CoraProcessor:
    """Panoramas and questions → the model's inputs: the configured views (``pixel_values [B, V, 3, S, S]``,
    ``geometries``) and the chat-template prompt (``input_ids``/``attention_mask``, left padded)."""

    def __init__(self, config: CoraConfig, tokenizer: Any) -> None:
        from cora.processors.text import ChatFormatter
        from cora.processors.views import PanoramaViews

        self.config = config
        self.tokenizer = tokenizer
        self.views = PanoramaViews.from_config(config.image_processing)
        self.formatter = ChatFormatter(
            tokenizer, system_prompt=config.data.system_prompt, vision_token=config.models.vision_token
        )

    def __call__(self, images: Any, text: str | list[str]) -> dict[str, Any]:
        texts = [text] if isinstance(text, str) else list(text)
        images = images if isinstance(images, list | tuple) else [images]
        views = self.views(list(images))
        prompts = [self.formatter.encode_prompt(t) for t in texts]
        input_ids, attention_mask = left_padded(prompts, self.tokenizer.pad_token_id)
        return {
            "pixel_values": views.pixels,
            "geometries": views.geometries,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        }

    def batch_decode(self, ids: torch.Tensor | list[list[int]], **kwargs: Any) -> list[str]:
        """Each row's text up to its first stop token (end of turn, eos)."""
        stops, pad = set(self.formatter.stop_token_ids), self.tokenizer.pad_token_id
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return [self.formatter.decode(cut_at_stop(row, stops, pad)) for row in rows]

    def save_pretrained(self, out_dir: str | Path, **kwargs: Any) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)  # found by from_pretrained beside the model's config.yaml

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> CoraProcessor:
        """From a saved model folder (its ``config.yaml`` and tokenizer) or a run folder."""
        from transformers import AutoTokenizer

        root = saved_model_dir(path) or Path(path)
        config = load_config(root / SAVED_CONFIG)
        tokenizer_dir = root if (root / "tokenizer_config.json").is_file() else None
        if tokenizer_dir is None:
            tokenizer_dir = Path(config.models.tokenizer_name or config.models.language_model_name)
        return cls(config, AutoTokenizer.from_pretrained(tokenizer_dir))


def register() -> None:
    """Make ``AutoConfig``/``AutoModel``/``AutoModelForImageTextToText``/``AutoProcessor`` know ``cora``."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    AutoConfig.register("cora", CoraHFConfig, exist_ok=True)
    AutoModel.register(CoraHFConfig, CoraForImageTextToText, exist_ok=True)
    AutoModelForImageTextToText.register(CoraHFConfig, CoraForImageTextToText, exist_ok=True)
    AutoProcessor.register(CoraHFConfig, CoraProcessor, exist_ok=True)


register()
