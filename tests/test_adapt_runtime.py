"""The stage runner's path (collated contract batch → PanoramaAdapter) equals the processor path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.adapt.data import AdaptCollator
from cora.adapt.encode import encode_batch
from cora.adapt.families import FAMILIES, get_family
from cora.adapt.inputs import INPUT_MODES, MULTI_IMAGE_MODES, PanoramaInputs, panorama_from_pixels
from cora.adapt.model import AdaptedVLM
from cora.adapt.runtime import PanoramaAdapter
from cora.config.schema import AdaptConfig, ImageProcessingConfig, LoRAConfig, StageConfig

ERP = np.random.default_rng(4).integers(0, 255, (64, 128, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_contract_batch_gives_the_processor_path_logits(name):
    family = get_family(name)
    model, processor = family.build_tiny(64, seed=2)
    adapted = AdaptedVLM(family, model, processor).eval()
    runtime = PanoramaAdapter(adapted, AdaptConfig(family=name, tiny=True))
    collate = AdaptCollator(family, processor)
    for mode in INPUT_MODES:
        if mode in MULTI_IMAGE_MODES and not family.multi_image:
            continue
        views = PanoramaInputs(mode, ImageProcessingConfig(image_size=64), native_height=32).view_batch(ERP)
        items = [
            {
                "pixel_values": views.pixels,
                "geometries": views.geometries,
                "meta": {"query": q, "references": [a], "source": f"row {i}"},
            }
            for i, (q, a) in enumerate([("What is behind you?", "a cube"), ("Where?", "to the left of it")])
        ]
        batch = collate(items)
        assert batch["pixel_values"].shape[:2] == (2, len(views.geometries))
        with torch.no_grad():
            got = runtime(
                batch["pixel_values"], batch["geometries"], batch["input_ids"], batch["attention_mask"], batch["labels"]
            )
            pano = panorama_from_pixels(views.pixels, views.geometries)
            want = adapted(
                encode_batch(
                    family, processor, [pano, pano], ["What is behind you?", "Where?"], ["a cube", "to the left of it"]
                )
            )
        assert torch.allclose(got.logits, want.logits, atol=1e-5), mode
        assert torch.allclose(got.loss, want.loss, atol=1e-5)


def test_set_stage_picks_the_recipe_from_the_language_model_mode():
    family = get_family("internvl")
    model, processor = family.build_tiny(64)
    runtime = PanoramaAdapter(AdaptedVLM(family, model, processor), AdaptConfig(family="internvl", tiny=True))
    table = runtime.set_stage(StageConfig(language_model="frozen", overlap_loss_weight=0.1))
    assert runtime.stage_recipe == "aligner" and runtime.adapted.peft is None
    assert {row["component"]: row["mode"] for row in table}["language model"] == "frozen"
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"multi_modal_projector"}
    runtime.set_stage(StageConfig(language_model="lora"))
    assert runtime.stage_recipe == "lora" and runtime.adapted.peft is not None


def test_gradient_checkpointing_keeps_the_loss_and_gradients():
    family = get_family("qwen2_5_vl")
    model, processor = family.build_tiny(64, seed=5)
    cfg = AdaptConfig(family="qwen2_5_vl", tiny=True, lora=LoRAConfig(dropout=0.0, target_modules=["all-linear"]))
    runtime = PanoramaAdapter(AdaptedVLM(family, model, processor), cfg)
    runtime.set_stage(StageConfig(language_model="lora"))
    model.train()  # no dropout anywhere: both passes must agree exactly
    views = PanoramaInputs("anyres_e2p", ImageProcessingConfig(image_size=64)).view_batch(ERP)
    batch = AdaptCollator(family, processor)(
        [
            {
                "pixel_values": views.pixels,
                "geometries": views.geometries,
                "meta": {"query": "Where?", "references": ["left"], "source": "r"},
            }
        ]
    )
    args = (batch["pixel_values"], batch["geometries"], batch["input_ids"], batch["attention_mask"], batch["labels"])

    def loss_and_grads():
        model.zero_grad()
        loss = runtime(*args).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    plain_loss, plain_grads = loss_and_grads()
    runtime.enable_gradient_checkpointing()
    assert model.model.language_model.gradient_checkpointing and model.model.visual.gradient_checkpointing
    ckpt_loss, ckpt_grads = loss_and_grads()
    assert torch.allclose(plain_loss, ckpt_loss)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain_grads, ckpt_grads, strict=True))


@pytest.mark.parametrize("name", ["gemma3", "blip2"])
def test_checkpoint_folder_loads_through_from_pretrained(name, tmp_path):
    from cora.adapt.runtime import load_vlm

    family = get_family(name)
    model, processor = family.build_tiny(64, seed=6)
    model.save_pretrained(tmp_path)
    processor.chat_template = processor.tokenizer.chat_template = None  # a checkpoint without one (BLIP-2's case)
    processor.save_pretrained(tmp_path)
    processor.chat_template = family.template
    assert not list(tmp_path.glob("chat_template*"))
    loaded_family, loaded, loaded_processor = load_vlm(AdaptConfig(family=name, model_name=str(tmp_path)))
    assert type(loaded) is family.model_class and loaded_processor.chat_template == family.template
    pano = PanoramaInputs("resize", ImageProcessingConfig(image_size=64))(ERP)
    batch = encode_batch(family, processor, [pano], ["Where?"], ["left"])
    again = encode_batch(loaded_family, loaded_processor, [pano], ["Where?"], ["left"])
    assert torch.equal(batch.inputs["input_ids"], again.inputs["input_ids"])
    with torch.no_grad():
        want = AdaptedVLM(family, model.eval(), processor)(batch).logits
        got = AdaptedVLM(loaded_family, loaded.eval(), loaded_processor)(again).logits
    assert torch.allclose(got, want, atol=1e-5)


def test_collator_names_the_row_whose_answer_is_truncated_away():
    family = get_family("qwen2_5_vl")
    processor = family.offline_processor(64)
    views = PanoramaInputs("resize", ImageProcessingConfig(image_size=64)).view_batch(ERP)
    item = {
        "pixel_values": views.pixels,
        "geometries": views.geometries,
        "meta": {"query": "Describe the panorama.", "references": ["a red cube"], "source": "train.csv:7"},
    }
    assert AdaptCollator(family, processor, max_length=200)([item])["labels"].ne(-100).any()
    with pytest.raises(ValueError, match=r"train.csv:7: no answer token is labelled .*adapt.max_length=30"):
        AdaptCollator(family, processor, max_length=30)([item])


def test_checkpoint_loading_takes_dtype_and_attention_from_the_config(tmp_path):
    from cora.adapt.runtime import load_vlm

    family = get_family("gemma3")
    model, processor = family.build_tiny(64)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    _, loaded, _ = load_vlm(
        AdaptConfig(family="gemma3", model_name=str(tmp_path), dtype="bfloat16", attn_implementation="eager")
    )
    assert next(loaded.parameters()).dtype == torch.bfloat16
    assert loaded.config.get_text_config()._attn_implementation == "eager"
