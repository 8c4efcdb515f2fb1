"""The language prior trains the kit LLM on text, saves it back, and is skipped when up to date."""

from __future__ import annotations

import json
import shutil

from cora.config.sections.demo import LanguagePriorConfig
from cora.kit.corpus import scene_corpus
from cora.recipes.demo.language_prior import prior_status, train_language_prior


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
    assert prior_status(lm, texts, cfg) == "none"
    assert not train_language_prior(lm, texts, cfg)["skipped"]
    assert json.loads((root / "prior.json").read_text())["summary"]["steps"] == 20
    assert prior_status(lm, texts, cfg) == "current"
    assert prior_status(lm, texts[:-5], cfg) == "stale"
    assert not list(root.glob(".prior-*"))


def test_a_stale_prior_restarts_from_the_base_weights(kit_paths, tmp_path):
    # Same texts, other settings: the new prior equals one trained on the kit's base LLM, not one
    # trained on top of the old prior, and the vision tower (the other prior's component) is untouched.
    texts = list(scene_corpus(n=150, seed=0))
    first_cfg = LanguagePriorConfig(enabled=True, steps=10, lr=5e-3, batch_size=8, seq_len=32)
    second_cfg = first_cfg.model_copy(update={"lr": 2e-3})
    lms = {}
    for name, cfgs in (("retrained", [first_cfg, second_cfg]), ("direct", [second_cfg])):
        root = tmp_path / name
        shutil.copytree(kit_paths.root, root)
        for cfg in cfgs:
            assert not train_language_prior(root / "language_model", texts, cfg)["skipped"]
        lms[name] = root
    weights = [(root / "language_model" / "model.safetensors").read_bytes() for root in lms.values()]
    assert weights[0] == weights[1]
    assert prior_status(lms["retrained"] / "language_model", texts, second_cfg) == "current"
    assert (lms["retrained"] / "vision" / "model.safetensors").read_bytes() == (
        kit_paths.vision / "model.safetensors"
    ).read_bytes()
    assert (lms["retrained"] / ".base" / "language_model.safetensors").read_bytes() == (
        kit_paths.language_model / "model.safetensors"
    ).read_bytes()
