"""PanoramaVLM: vision tower → resampler → (VICReg projector | panorama projector → LLM)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cora.config import CoraConfig, load_config, save_config
from cora.config.sections.models import DType, ModelsConfig
from cora.config.sections.training import StageConfig
from cora.model.feature_cache import TowerFeatureCache, tensor_digest
from cora.model.fusion import LanguageFusion, to_left_padding
from cora.model.language import LanguageModel, build_language_model
from cora.model.projectors import PanoramaProjector, VICRegProjector
from cora.model.resamplers import Resampler, build_resampler
from cora.model.stages import COMPONENTS, OWN_COMPONENTS, StageModes, component_row
from cora.model.stitching import plan_stitching
from cora.model.vision import VisionBackbone, build_vision_backbone
from cora.processors.geometry import ViewGeometry
from cora.utils.io import atomic_open, atomic_write_json
from cora.utils.rng import seeded

logger = logging.getLogger(__name__)

# The files of a saved model folder (save_pretrained / from_pretrained).
SAVED_WEIGHTS = "trainable.safetensors"
SAVED_META = "cora_model.json"
SAVED_CONFIG = "config.yaml"


def saved_model_dir(path: str | Path) -> Path | None:
    """The saved model in ``path``: the folder itself, or a run folder's ``model/`` (what ``cora train``
    exports); None when neither holds one."""
    for folder in (Path(path), Path(path) / "model"):
        if (folder / SAVED_META).is_file():
            return folder
    return None


@dataclass
class VisionFeatures:
    tokens: torch.Tensor  # [B, V, rows*cols, latent]
    rows: int
    cols: int


@dataclass
class PanoramaOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    overlap_features: torch.Tensor | None = None  # [B, T, rows, cols, D] (tiles only)
    tile_geometries: list[ViewGeometry] | None = None
    vision_tokens: int | None = None  # N vision tokens the LLM saw
    resampler_features: torch.Tensor | None = None  # [B, V, rows*cols, latent]
    labels: torch.Tensor | None = None  # [B, T'] the labels aligned with ``logits`` (vision positions ignored)


def tile_indices(geometries: Sequence[ViewGeometry]) -> list[int]:
    """Views the overlap loss works on: every view but the global one(s)."""
    return [i for i, g in enumerate(geometries) if g.kind != "global"]


class PanoramaVLM(nn.Module):
    """The CORA model. Components run or not according to the modes :meth:`set_stage` sets.

    Data flow (B panoramas, V views of S×S pixels, grid g×g patches, rows×cols tokens after the resampler)::

        pixel_values [B, V, 3, S, S] ─ vision ─> [B*V, g*g, hidden] ─ resampler ─> [B, V, rows*cols, latent]
            ├─ vicreg_projector (tiles only) ─> overlap_features [B, T, rows, cols, D]   (overlap loss)
            └─ panorama_projector (stitching + yaw PE) ─> [B, N_vision, lm_hidden]
                 ─ fused at the <|vision|> placeholder ─> language_model ─> loss / logits
    """

    def __init__(
        self,
        vision: VisionBackbone,
        resampler: Resampler,
        vicreg_projector: VICRegProjector,
        panorama_projector: PanoramaProjector,
        language_model: LanguageModel,
        config: ModelsConfig | None = None,
    ) -> None:
        super().__init__()
        self.vision = vision
        self.resampler = resampler
        self.vicreg_projector = vicreg_projector
        self.panorama_projector = panorama_projector
        self.language_model = language_model
        vid = language_model.vision_token_id
        self.fusion = LanguageFusion(vid if vid is not None else -1)
        #: the ``models:`` section this model was built from (None for a hand-assembled model)
        self.config = config
        self.modes = StageModes()
        self.ever_trainable: set[str] = set()
        self.feature_cache: TowerFeatureCache | None = None  # enable_feature_cache()
        self._tower_fingerprint: tuple[tuple[int, ...], str] | None = None

    @property
    def tokenizer(self):
        return self.language_model.tokenizer

    # -- vision ---------------------------------------------------------------------
    def encode_vision(self, pixel_values: torch.Tensor, geometries: Sequence[ViewGeometry]) -> VisionFeatures:
        """``[B, V, 3, S, S]`` in [0, 1] → resampled tokens ``[B, V, rows*cols, latent]``."""
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be [B, V, 3, S, S], got {tuple(pixel_values.shape)}")
        b, v = pixel_values.shape[:2]
        if v != len(geometries):
            raise ValueError(f"pixel_values has {v} views but {len(geometries)} geometries were given")
        flat = pixel_values.flatten(0, 1)
        vision_trains = any(p.requires_grad for p in self.vision.parameters())
        if self.feature_cache is not None and not vision_trains:
            # A frozen tower: each panorama's features are computed once (see cora.model.feature_cache).
            patches = self.feature_cache.features(pixel_values, geometries, self.tower_fingerprint(), self.vision)
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and vision_trains):
                patches = self.vision(flat)  # [B*V, grid*grid, hidden]
        dtype = next(self.resampler.parameters(), patches).dtype
        tokens = self.resampler(patches.to(dtype))  # [B*V, L', latent]
        rows, cols = self.resampler.out_grid(self.vision.grid, self.vision.grid)
        return VisionFeatures(tokens.reshape(b, v, rows * cols, -1), rows, cols)

    def enable_feature_cache(self, max_items: int = 256, disk_dir: str | Path | None = None) -> None:
        """Reuse the frozen tower's features of a panorama seen before (memory, then ``disk_dir``)."""
        self.feature_cache = TowerFeatureCache(max_items, disk_dir)

    def tower_fingerprint(self) -> str:
        """sha256 of the tower's weights and image normalisation; recomputed when any of its weights changed
        in place since (an optimiser step or a load bumps the tensor's version counter)."""
        version = tuple(int(p._version) for p in self.vision.parameters())
        if self._tower_fingerprint is None or self._tower_fingerprint[0] != version:
            digest = hashlib.sha256(f"{self.vision.image_size}".encode())
            for _, tensor in sorted(self.vision.state_dict().items()):
                tensor_digest(digest, tensor)
            self._tower_fingerprint = (version, digest.hexdigest())
        return self._tower_fingerprint[1]

    def vision_embeddings(self, features: VisionFeatures, geometries: Sequence[ViewGeometry]) -> torch.Tensor:
        """Panorama projector: ``[B, N_vision, lm_hidden]``."""
        return self.panorama_projector(features.tokens, geometries, features.rows, features.cols)

    def overlap_features(self, features: VisionFeatures, geometries: Sequence[ViewGeometry]) -> torch.Tensor:
        """VICReg projector over the tiles: ``[B, T, rows, cols, D]``."""
        tiles = tile_indices(geometries)
        projected = self.vicreg_projector(features.tokens[:, tiles])
        return projected.view(projected.shape[0], len(tiles), features.rows, features.cols, -1)

    def num_vision_tokens(self, geometries: Sequence[ViewGeometry], stitching: str | None = None) -> int:
        rows, cols = self.resampler.out_grid(self.vision.grid, self.vision.grid)
        return plan_stitching(list(geometries), rows, cols, stitching or self.panorama_projector.stitching).num_tokens

    # -- language -------------------------------------------------------------------
    def _fuse(
        self,
        vision: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
    ):
        if self.language_model.vision_token_id is None:
            raise RuntimeError("the language model has no tokenizer: the <|vision|> placeholder is unknown")
        text = self.language_model.embed(input_ids)
        return self.fusion(input_ids, text, vision.to(text.dtype), attention_mask, labels)

    def forward(
        self,
        pixel_values: torch.Tensor,
        geometries: Sequence[ViewGeometry],
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> PanoramaOutput:
        """Stage-aware: overlap features when the VICReg projector is used, LM loss/logits when text is given
        and the language model is used."""
        geometries = list(geometries)
        features = self.encode_vision(pixel_values, geometries)
        out = PanoramaOutput(resampler_features=features.tokens)
        if self.modes.uses("vicreg_projector") and tile_indices(geometries):
            out.overlap_features = self.overlap_features(features, geometries)
            out.tile_geometries = [geometries[i] for i in tile_indices(geometries)]
        if input_ids is not None and self.modes.uses_language_model:
            vision = self.vision_embeddings(features, geometries)
            fused = self._fuse(vision, input_ids, attention_mask, labels)
            lm_out = self.language_model(fused.inputs_embeds, fused.attention_mask, fused.position_ids, fused.labels)
            out.loss, out.logits, out.vision_tokens = lm_out.loss, lm_out.logits, vision.shape[1]
            out.labels = fused.labels
        return out

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        geometries: Sequence[ViewGeometry],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generation_kwargs: Any,
    ) -> torch.Tensor:
        """New token ids ``[B, new]``. Vision tokens are computed once; decoding uses the KV cache
        (unless ``use_cache=False`` is passed). Right-padded prompts are moved to left padding."""
        geometries = list(geometries)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if bool((attention_mask[:, -1] == 0).any()):
            input_ids, attention_mask = to_left_padding(input_ids, attention_mask, self.language_model.pad_token_id)
        vision = self.vision_embeddings(self.encode_vision(pixel_values, geometries), geometries)
        fused = self._fuse(vision, input_ids, attention_mask, None)
        tok = self.tokenizer
        generation_kwargs.setdefault("pad_token_id", self.language_model.pad_token_id)
        # A generated placeholder could never be fed back (one per panorama): never sample it.
        vid = self.language_model.vision_token_id
        if vid is not None:
            suppressed = list(generation_kwargs.get("suppress_tokens") or [])
            generation_kwargs["suppress_tokens"] = [*suppressed, vid] if vid not in suppressed else suppressed
        if tok is not None and tok.eos_token_id is not None:
            generation_kwargs.setdefault("eos_token_id", tok.eos_token_id)
        return self.language_model.model.generate(
            inputs_embeds=fused.inputs_embeds, attention_mask=fused.attention_mask, **generation_kwargs
        )

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations of the vision tower and the LLM in backward (HF's non-reentrant
        checkpointing; works with frozen bases and LoRA)."""
        for hf_model in (self.vision.tower, self.language_model.model):
            if hf_model.supports_gradient_checkpointing:
                hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    # -- stages ---------------------------------------------------------------------
    def set_stage(self, stage: StageConfig) -> list[dict[str, Any]]:
        """Apply a stage's per-component modes (``requires_grad``, LoRA on the LLM); one row per component
        (mode, parameters, trainable) for the log."""
        modes = StageModes.of(stage)
        self.vision.set_trainable_blocks(stage.vision_trainable_blocks)
        for component in OWN_COMPONENTS:
            getattr(self, component).requires_grad_(getattr(modes, component) == "full")
        lm = self.language_model
        if modes.language_model == "lora":
            lm.apply_lora(**(stage.lora.model_dump() if stage.lora is not None else {}))
            for name, p in lm.named_parameters():
                p.requires_grad_("lora_" in name)
        else:
            lm.requires_grad_(modes.language_model == "full")
        self.modes = modes
        for prefix, module in (("vision.", self.vision), ("language_model.", lm)):
            self.ever_trainable.update(prefix + n for n, p in module.named_parameters() if p.requires_grad)
        return [component_row(c, getattr(modes, c), getattr(self, c)) for c in COMPONENTS]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight that is not a frozen pretrained one: resampler, projectors, LoRA, and any
        vision/LM parameter that has been trainable in some stage."""
        own = tuple(f"{c}." for c in OWN_COMPONENTS)
        keep = {}
        for name, p in self.named_parameters():
            if name.startswith(own) or "lora_" in name or name in self.ever_trainable or p.requires_grad:
                keep[name] = p.detach()
        return keep

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`trainable_state_dict` saved; unknown names are an error."""
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise KeyError(
                f"weights for parameters this model does not have: {unknown[:5]}{' …' if len(unknown) > 5 else ''}"
            )
        with torch.no_grad():
            for name, tensor in state.items():
                if params[name].shape != tensor.shape:
                    raise ValueError(f"{name}: saved shape {tuple(tensor.shape)} ≠ model {tuple(params[name].shape)}")
                params[name].copy_(tensor)
        own = tuple(f"{c}." for c in OWN_COMPONENTS)
        self.ever_trainable.update(n for n in state if not n.startswith(own))

    # -- building, saving, loading ----------------------------------------------------
    @classmethod
    def from_config(cls, models: ModelsConfig, seed: int = 0, meta: bool = False) -> PanoramaVLM:
        """The model ``models`` describes: the vision tower and LLM from their names/folders (or
        architectures), the resampler and projectors freshly initialised from ``seed``.

        ``seed`` initialises CORA's own components inside a forked RNG: the caller's global RNG is
        left as it was. ``meta``: every parameter on the meta device (no memory, no weights read; for
        parameter counts of reference-size models).
        """
        m = models
        dtype: dict[DType, torch.dtype | None] = {
            "auto": None,
            "float32": torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
        }
        vision = build_vision_backbone(m.vision_name, m.vision_arch, dtype=dtype[m.dtype], meta=meta)
        language = build_language_model(
            m.language_model_name,
            m.language_model_arch,
            m.tokenizer_name,
            m.vision_token,
            m.attn_implementation,
            m.dtype,
            meta=meta,
        )
        with seeded(seed), torch.device("meta") if meta else contextlib.nullcontext():
            resampler = build_resampler(m.resampler_type, vision.hidden_size, m.latent_dim, **m.resampler.model_dump())
            p = m.projector
            vicreg = VICRegProjector(m.latent_dim, p.vicreg_hidden_dim, p.vicreg_out_dim, p.vicreg_dropout)
            panorama = PanoramaProjector(
                m.latent_dim, language.hidden_size, p.stitching, p.positional_encoding, p.max_freq
            )
        return cls(vision, resampler, vicreg, panorama, language, config=m)

    def save_pretrained(self, out_dir: str | Path, run_config: CoraConfig | None = None) -> Path:
        """``trainable.safetensors`` (every weight but the frozen pretrained ones), ``cora_model.json``
        (LoRA settings, weight names) and ``config.yaml``: ``run_config`` when given (what inference
        needs around the model: views, prompt, decoding), else a config holding this model's section.
        The base models are referenced by name or absolute folder, not copied."""
        if self.config is None:
            raise ValueError("save_pretrained needs the models: section the model was built from (config is None)")
        from safetensors.torch import save

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.trainable_state_dict().items()}
        data = save(state)
        with atomic_open(out / SAVED_WEIGHTS, "wb") as handle:
            handle.write(data)
        models = _with_absolute_model_paths(self.config)
        if run_config is None:
            logger.warning(
                "save_pretrained(%s) without run_config: its config.yaml gets this model's models: section and "
                "the default views, prompt and decoding (pass run_config= to keep the run's)",
                out,
            )
        run = run_config if run_config is not None else CoraConfig()
        save_config(run.model_copy(update={"models": models}), out / SAVED_CONFIG)
        lm = self.language_model
        atomic_write_json(
            out / SAVED_META,
            {
                "format": 1,
                "lora": lm.lora_settings if lm.has_lora else None,
                "vision_name": models.vision_name,
                "language_model_name": models.language_model_name,
                "weights": sorted(state),
                "sha256": hashlib.sha256(data).hexdigest(),
                # The base weights this model needs and does not save: loading it on other ones is refused.
                "base": {
                    component: {"name": getattr(models, f"{component}_name"), "sha256": digest}
                    for component, digest in self.base_fingerprints(set(state)).items()
                },
            },
        )
        from cora.model.hf import write_hf_config  # config.json: transformers' Auto classes read model_type

        write_hf_config(out, run.model_copy(update={"models": models}))
        return out

    def base_fingerprints(self, saved: set[str]) -> dict[str, str]:
        """sha256 of the vision tower's and the LLM's weights that are not in ``saved`` (the base weights), per
        component; LoRA's own weights excluded, its wrapped base layers named as before injection."""
        out = {}
        for component in ("vision", "language_model"):
            digest = hashlib.sha256()
            for name, tensor in sorted(getattr(self, component).state_dict().items()):
                full = f"{component}.{name}"
                if full in saved or "lora_" in name or tensor.is_meta:
                    continue
                digest.update(full.replace(".base_layer.", ".").encode())
                digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            out[component] = digest.hexdigest()
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, meta: bool = False, allow_base_mismatch: bool = False) -> PanoramaVLM:
        """A model saved by :meth:`save_pretrained`: rebuilt from its ``config.yaml`` (base models from
        their names/folders), LoRA re-applied, the saved weights loaded.

        Base weights other than those it was trained on (a rebuilt kit, a hub model that changed) are an
        error naming both, unless ``allow_base_mismatch`` (then a warning): the model would answer differently.
        """
        root = Path(path)
        for name in (SAVED_CONFIG, SAVED_META, SAVED_WEIGHTS):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{root}: not a saved CORA model ({name} missing)")
        config = load_config(root / SAVED_CONFIG)
        # an export names its own tower folders relative to itself (portable, e.g. pushed to a hub)
        inside = {
            key: str(root / name)
            for key in ("vision_name", "language_model_name", "tokenizer_name")
            if (name := getattr(config.models, key)) and not Path(name).is_absolute() and (root / name).is_dir()
        }
        model = cls.from_config(config.models.model_copy(update=inside), seed=config.experiment.seed, meta=meta)
        info = json.loads((root / SAVED_META).read_text())
        if info.get("lora"):
            model.language_model.apply_lora(**info["lora"])
        if not meta:
            _check_base(root, info, model.base_fingerprints(set(info.get("weights") or ())), allow_base_mismatch)
            model.load_trainable_state_dict(_read_weights(root / SAVED_WEIGHTS, info.get("sha256")))
        return model


class BaseModelMismatch(ValueError):
    """A saved model loaded on base weights other than those it was trained on."""


def _check_base(root: Path, info: dict[str, Any], found: dict[str, str], allow: bool) -> None:
    for component, recorded in (info.get("base") or {}).items():
        if recorded.get("sha256") == found.get(component):
            continue
        was, now = recorded.get("sha256", "?")[:12], found.get(component, "?")[:12]
        message = (
            f"{root}: trained on the {component} {recorded.get('name')} with weights {was}…, but "
            f"{info.get(f'{component}_name')} now holds weights {now}… (a rebuilt kit or a changed checkpoint): "
            "it would answer differently"
        )
        if not allow:
            raise BaseModelMismatch(message + "; load it with allow_base_mismatch=True to use these weights anyway")
        logger.warning("%s; loading anyway (allow_base_mismatch)", message)


def _read_weights(path: Path, sha256: str | None) -> dict[str, torch.Tensor]:
    """The saved weights, refused when their bytes do not match the recorded checksum (a damaged or changed
    file) or when a tensor holds an infinite or NaN value (a diverged run's weights answer nothing)."""
    from safetensors.torch import load

    data = path.read_bytes()
    if sha256 is not None and (actual := hashlib.sha256(data).hexdigest()) != sha256:
        raise ValueError(f"{path}: checksum mismatch (cora_model.json records {sha256[:12]}…, the file is "
                         f"{actual[:12]}…): the weights were changed or damaged since they were saved")  # fmt: skip
    state = load(data)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: {name}: weights not finite (inf or NaN); refusing to load them")
    return state


def _with_absolute_model_paths(models: ModelsConfig) -> ModelsConfig:
    """Relative local folders (``.cora/kit/vision``) become absolute, so the saved model loads from
    any working directory; hub names are left alone."""
    updates = {}
    for key in ("vision_name", "language_model_name", "tokenizer_name"):
        value = getattr(models, key)
        if value and not Path(value).is_absolute() and Path(value).exists():
            updates[key] = str(Path(value).resolve())
    return models.model_copy(update=updates) if updates else models
