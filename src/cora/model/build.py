"""Config → :class:`PanoramaVLM`, and saving / loading a trained model."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch

from cora.model.language import build_language_model
from cora.model.projectors import PanoramaProjector, VICRegProjector
from cora.model.resamplers import build_resampler
from cora.model.vision import build_vision_backbone
from cora.model.vlm import PanoramaVLM
from cora.utils.io import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

WEIGHTS = "trainable.safetensors"
META = "cora_model.json"
CONFIG = "config.yaml"


def build_model(cfg, meta: bool = False) -> PanoramaVLM:
    """The model ``cfg.models`` describes. ``meta``: every parameter on the meta device (no memory,
    no weights read; for parameter counts of reference-size models)."""
    m = cfg.models
    dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[m.dtype]
    vision = build_vision_backbone(m.vision_name, m.vision_arch, dtype=dtype, meta=meta)
    language = build_language_model(
        m.language_model_name,
        m.language_model_arch,
        m.tokenizer_name,
        m.vision_token,
        m.attn_implementation,
        m.dtype,
        meta=meta,
    )
    torch.manual_seed(cfg.experiment.seed)
    with torch.device("meta") if meta else contextlib.nullcontext():
        resampler = build_resampler(m.resampler_type, vision.hidden_size, m.latent_dim, **m.resampler.model_dump())
        p = m.projector
        vicreg = VICRegProjector(m.latent_dim, p.vicreg_hidden_dim, p.vicreg_out_dim, p.vicreg_dropout)
        panorama = PanoramaProjector(m.latent_dim, language.hidden_size, p.stitching, p.positional_encoding, p.max_freq)
    return PanoramaVLM(vision, resampler, vicreg, panorama, language, config=cfg)


def save_model(model: PanoramaVLM, out_dir: str | Path) -> Path:
    """``config.yaml`` + the non-frozen-pretrained weights + LoRA settings; the base models are
    referenced by the names/paths in the config."""
    from safetensors.torch import save

    from cora.config import save_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    with atomic_open(out / WEIGHTS, "wb") as handle:
        handle.write(save(state))
    if model.config is not None:
        save_config(_with_absolute_model_paths(model.config), out / CONFIG)
    lm = model.language_model
    atomic_write_json(
        out / META,
        {
            "format": 1,
            "lora": getattr(lm, "lora_settings", None) if lm.has_lora else None,
            "vision_name": getattr(model.config.models, "vision_name", None) if model.config is not None else None,
            "language_model_name": (
                getattr(model.config.models, "language_model_name", None) if model.config is not None else None
            ),
            "weights": sorted(state),
        },
    )
    return out


def _with_absolute_model_paths(cfg):
    """Relative local folders (``.cora/kit/vision``) become absolute, so the saved model loads from
    any working directory; hub names are left alone."""
    updates = {}
    for key in ("vision_name", "language_model_name", "tokenizer_name"):
        value = getattr(cfg.models, key)
        if value and not Path(value).is_absolute() and Path(value).exists():
            updates[key] = str(Path(value).resolve())
    return cfg.model_copy(update={"models": cfg.models.model_copy(update=updates)}) if updates else cfg


def load_model(path: str | Path, meta: bool = False) -> PanoramaVLM:
    """Rebuild from ``config.yaml`` (base models from their names/paths), then load the saved weights."""
    from safetensors.torch import load_file

    from cora.config import load_config

    root = Path(path)
    for name in (CONFIG, META, WEIGHTS):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: not a saved CORA model ({name} missing)")
    model = build_model(load_config(root / CONFIG), meta=meta)
    info = json.loads((root / META).read_text())
    if info.get("lora"):
        model.language_model.apply_lora(**info["lora"])
    if not meta:
        model.load_trainable_state_dict(load_file(str(root / WEIGHTS)))
    return model
