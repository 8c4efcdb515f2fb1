"""Build the offline tiny-model kit and save it as ordinary HF folders.

``<out_dir>/vision``          SigLIP-class vision tower + its image processor
``<out_dir>/language_model``  Qwen3-class causal LM + tokenizer (with chat template)
``<out_dir>/kit.json``        what was built, from which spec (a rebuild is skipped when equal)

Everything downstream loads these with ``from_pretrained(path)``, the same call that
loads ``google/siglip2-so400m-patch16-256`` or ``Qwen/Qwen3-0.6B``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModel, AutoModelForCausalLM, GenerationConfig, SiglipImageProcessorPil

from cora.config.schema import KitConfig
from cora.kit.corpus import scene_corpus
from cora.kit.tokenizer import train_tokenizer
from cora.model.arch import hf_config_from_arch
from cora.utils.io import atomic_write_json
from cora.utils.rng import seeded

logger = logging.getLogger(__name__)

MANIFEST = "kit.json"


@dataclass(frozen=True)
class KitPaths:
    root: Path

    @property
    def vision(self) -> Path:
        return self.root / "vision"

    @property
    def language_model(self) -> Path:
        return self.root / "language_model"

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST


def _spec_digest(kit: KitConfig, extra_texts: list[str]) -> str:
    spec = kit.model_dump(mode="json", exclude={"out_dir"})
    payload = json.dumps({"spec": spec, "extra": extra_texts}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def build_kit(
    kit: KitConfig,
    out_dir: str | Path | None = None,
    extra_texts: Iterable[str] = (),
    seed: int = 0,
    force: bool = False,
) -> KitPaths:
    """Train the tokenizer, build random-init models from the specs, save all as HF folders.

    A kit whose manifest matches the spec is reused unless ``force``; a partial kit (no
    manifest: an interrupted build) is rebuilt from scratch.
    """
    paths = KitPaths(Path(out_dir or kit.out_dir))
    extra = list(extra_texts)
    digest = _spec_digest(kit, extra)
    if not force and paths.manifest.is_file():
        old = json.loads(paths.manifest.read_text())
        if old.get("digest") == digest:
            logger.info("kit at %s is up to date (digest %s)", paths.root, digest)
            return paths
    if paths.root.exists():
        # Stale or partial: start clean so no file of an older kit survives.
        for sub in (paths.vision, paths.language_model, paths.manifest):
            if sub.is_dir():
                shutil.rmtree(sub)
            elif sub.exists():
                sub.unlink()
    paths.root.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(
        [*scene_corpus(seed=seed), *extra],
        vocab_size=kit.tokenizer.vocab_size,
        min_frequency=kit.tokenizer.min_frequency,
        model_max_length=kit.tokenizer.model_max_length,
    )

    vision_cfg = hf_config_from_arch(kit.vision)
    lm_cfg = hf_config_from_arch(
        kit.language_model,
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    with seeded(seed):  # the kit's weights follow from the seed; the caller's RNG goes on untouched
        vision = AutoModel.from_config(vision_cfg)
        lm = AutoModelForCausalLM.from_config(lm_cfg)
    vision.save_pretrained(paths.vision)
    size = int(getattr(vision_cfg, "image_size", 224))
    SiglipImageProcessorPil(size={"height": size, "width": size}).save_pretrained(paths.vision)
    # Greedy by default: evaluation must be deterministic (Qwen3's own default samples).
    lm.generation_config = GenerationConfig(
        do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    lm.save_pretrained(paths.language_model)
    tokenizer.save_pretrained(paths.language_model)

    atomic_write_json(
        paths.manifest,
        {
            "digest": digest,
            "vision": {"model_type": vision_cfg.model_type, "parameters": vision.num_parameters()},
            "language_model": {
                "model_type": lm_cfg.model_type,
                "parameters": lm.num_parameters(),
                "vocab_size": len(tokenizer),
            },
            "spec": kit.model_dump(mode="json"),
        },
    )
    logger.info(
        "kit written to %s (vision %s params, LM %s params, %d tokens)",
        paths.root,
        f"{vision.num_parameters():,}",
        f"{lm.num_parameters():,}",
        len(tokenizer),
    )
    return paths
