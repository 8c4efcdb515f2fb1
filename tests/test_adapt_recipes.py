"""Recipes (aligner only / LLM LoRA + aligner), adapters that save alone, and merged export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.adapt.encode import encode_batch
from cora.adapt.families import get_family
from cora.adapt.inputs import PanoramaInputs
from cora.adapt.model import AdaptedVLM
from cora.adapt.recipes import aligner_module_names, apply_recipe, export_merged, load_adapter, save_adapter
from cora.config.schema import ImageProcessingConfig, LoRAConfig

ERP = np.random.default_rng(1).integers(0, 255, (64, 128, 3), dtype=np.uint8)


def _setup(name, mode="anyres_e2p"):
    family = get_family(name)
    model, processor = family.build_tiny(64, seed=3)
    adapted = AdaptedVLM(family, model, processor)
    pano = PanoramaInputs(mode, ImageProcessingConfig(image_size=64), native_height=32)(ERP)
    batch = encode_batch(family, processor, [pano], ["What is behind you?"], ["a blue sphere"])
    return family, adapted, batch


def _logits(adapted, batch):
    with torch.no_grad():
        return adapted.eval()(batch).logits


def _perturb_trainable(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


@pytest.mark.parametrize("name", ["qwen2_5_vl", "internvl"])
def test_aligner_recipe_trains_only_the_aligner_and_saves_it_alone(name, tmp_path):
    family, adapted, batch = _setup(name)
    counts = apply_recipe(adapted, "aligner")
    aligner = aligner_module_names(adapted.model, family.aligner_modules)
    expected = sum(p.numel() for n in aligner for p in adapted.model.get_submodule(n).parameters())
    assert counts["trainable"] == expected < counts["total"]
    _perturb_trainable(adapted.model)
    want = _logits(adapted, batch)
    save_adapter(adapted, tmp_path / "a")
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"aligner.safetensors", "cora_adapter.json"}

    _, fresh, _ = _setup(name)
    assert not torch.allclose(_logits(fresh, batch), want)
    assert load_adapter(fresh, tmp_path / "a") == "aligner"
    assert torch.allclose(_logits(fresh, batch), want, atol=1e-5)


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl", "internvl", "gemma3", "blip2"])
def test_lora_adapter_round_trip_and_merged_export(name, tmp_path):
    family, adapted, batch = _setup(name, "anyres_e2p" if get_family(name).multi_image else "resize")
    base_logits = _logits(adapted, batch)
    counts = apply_recipe(adapted, "lora", LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"]))
    trainable = [n for n, p in adapted.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("modules_to_save" in n for n in trainable)  # the aligner trains whole
    lora_layers = {n.split(".lora_")[0] for n in trainable if "lora_" in n}
    assert all(n.startswith(family.language_model_prefix) for n in lora_layers)
    assert any(n.endswith("q_proj") for n in lora_layers) and any(n.endswith(("down_proj", "fc2")) for n in lora_layers)
    assert counts["trainable"] < counts["total"] / 2
    _perturb_trainable(adapted.model)  # LoRA B starts at zero: make the adapter matter
    want = _logits(adapted, batch)
    assert not torch.allclose(want, base_logits)

    save_adapter(adapted, tmp_path / "lora")
    saved = {p.name for p in (tmp_path / "lora").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json"} <= saved and "model.safetensors" not in saved

    _, fresh, _ = _setup(name, "anyres_e2p" if family.multi_image else "resize")
    assert load_adapter(fresh, tmp_path / "lora") == "lora"
    assert torch.allclose(_logits(fresh, batch), want, atol=1e-5)

    out = export_merged(fresh, tmp_path / "merged")
    reloaded = family.model_class.from_pretrained(out)
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    merged = AdaptedVLM(family, reloaded, type(fresh.processor).from_pretrained(out))
    assert torch.allclose(_logits(merged, batch), want, atol=1e-4)


def test_adapter_of_another_family_is_refused(tmp_path):
    _, adapted, _ = _setup("internvl")
    apply_recipe(adapted, "aligner")
    save_adapter(adapted, tmp_path / "a")
    _, other, _ = _setup("gemma3")
    with pytest.raises(ValueError, match="adapter of family 'internvl', model is 'gemma3'"):
        load_adapter(other, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="not an adapter folder"):
        load_adapter(other, tmp_path)
