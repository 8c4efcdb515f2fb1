"""The language prior trains the kit LLM on text, saves it back, and is skipped when up to date."""

from __future__ import annotations

import json
import shutil

from cora.config.sections.training import LanguagePriorConfig
from cora.kit.corpus import scene_corpus
from cora.training.prior import train_language_prior


def test_prior_learns_saves_and_skips(kit_paths, tmp_path):
    root = tmp_path / "kit"
    shutil.copytree(kit_paths.root, root)
    lm = root / "language_model"
    texts = list(scene_corpus(n=150, seed=0))
    cfg = LanguagePriorConfig(enabled=True, steps=20, lr=5e-3, batch_size=8, seq_len=32)
    first = train_language_prior(lm, texts, cfg)
    assert not first["skipped"]
    assert first["heldout_loss_after"] < first["heldout_loss_before"] - 1.0
    weights = (lm / "model.safetensors").read_bytes()
    assert weights != (kit_paths.language_model / "model.safetensors").read_bytes()
    again = train_language_prior(lm, texts, cfg)
    assert again["skipped"] and again["heldout_loss_after"] == first["heldout_loss_after"]
    assert (lm / "model.safetensors").read_bytes() == weights
    # A rebuilt kit (fresh random weights) is not mistaken for a trained one.
    shutil.copy(kit_paths.language_model / "model.safetensors", lm / "model.safetensors")
    assert not train_language_prior(lm, texts, cfg)["skipped"]
    assert json.loads((root / "prior.json").read_text())["summary"]["steps"] == 20
    assert not list(root.glob(".prior-*"))
