"""PanoramaVLM on the tiny kit: stages, outputs, generation, save/load, the LLM wrapper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from cora.config.sections.image import ImageProcessingConfig
from cora.config.sections.training import StageConfig
from cora.model import build_model, load_model
from cora.model.language import LanguageModel
from cora.processors.views import plan_views

SIZE = 64
VIEWS = plan_views(ImageProcessingConfig(image_size=SIZE))


@pytest.fixture(scope="module")
def cfg(tiny_config, kit_paths):
    # The reference resampler (full token grid) pinned: tiny.yaml's choice is tuned for the demo.
    models = tiny_config.models.model_copy(
        update={
            "resampler_type": "bimamba",
            "vision_name": str(kit_paths.vision),
            "language_model_name": str(kit_paths.language_model),
            "resampler": tiny_config.models.resampler.model_copy(update={"depth": 1, "d_state": 16}),
        }
    )
    return tiny_config.model_copy(update={"models": models})


@pytest.fixture(scope="module")
def model(cfg):
    return build_model(cfg).eval()


def _stage(cfg, name):
    return cfg.training.stage_configs[name]


def _text(model, texts, padding_side="right"):
    tok = model.tokenizer
    tok.padding_side = padding_side
    enc = tok(texts, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def test_loads_the_kit_through_from_pretrained(model, kit_paths):
    tower = AutoModel.from_pretrained(kit_paths.vision)
    for name, p in tower.named_parameters():
        if ".head." not in f".{name}":
            torch.testing.assert_close(model.vision.tower.get_parameter(name), p)
    assert model.vision.grid == 8 and model.vision.num_tokens == 64
    # mean/std come from the saved SigLIP image processor (0.5 / 0.5)
    assert model.vision.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert model.language_model.vision_token_id == model.tokenizer.convert_tokens_to_ids("<|vision|>")


def test_vision_backbone_normalises_and_resizes(model):
    pixels = torch.rand(2, 3, SIZE, SIZE)
    ours = model.vision(pixels)
    direct = model.vision.tower(pixel_values=(pixels - 0.5) / 0.5).last_hidden_state
    torch.testing.assert_close(ours, direct)
    assert model.vision(torch.rand(1, 3, 40, 40)).shape == (1, 64, 64)


@pytest.mark.parametrize(
    "arch,tokens",
    [
        (
            {
                "model_type": "clip_vision_model",
                "image_size": 32,
                "patch_size": 8,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
            },
            16,
        ),
        (
            {
                "model_type": "dinov2",
                "image_size": 32,
                "patch_size": 8,
                "hidden_size": 16,
                "mlp_ratio": 2,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
            },
            16,
        ),
        (
            {
                "model_type": "siglip2_vision_model",
                "num_patches": 16,
                "patch_size": 8,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
            },
            16,
        ),
    ],
)
def test_cls_tokens_are_dropped(arch, tokens):
    from cora.config.base import ArchSpec
    from cora.model.vision import build_vision_backbone

    backbone = build_vision_backbone(None, ArchSpec(**arch))
    assert backbone(torch.rand(2, 3, 32, 32)).shape == (2, tokens, 16)
    backbone.set_trainable_blocks(1)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(".1." in n or "layernorm" in n for n in trainable)


def test_wrapper_leaves_lm_logits_unchanged_without_vision(model, kit_paths):
    hf = AutoModelForCausalLM.from_pretrained(kit_paths.language_model).eval()
    ids, mask = _text(model, ["a kitchen with a window"])
    expected = hf(input_ids=ids, attention_mask=mask).logits
    lm = model.language_model
    got = lm(lm.embed(ids), attention_mask=mask).logits
    torch.testing.assert_close(got, expected)


def test_missing_vision_token_is_added_and_embeddings_resized(kit_paths):
    hf = AutoModelForCausalLM.from_pretrained(kit_paths.language_model).eval()
    tok = AutoTokenizer.from_pretrained(kit_paths.language_model)
    ids = tok(["a red door"], return_tensors="pt")["input_ids"]
    before = hf(input_ids=ids).logits
    old = hf.get_input_embeddings().weight.shape[0]
    lm = LanguageModel(hf, tok, "<|panorama|>")
    assert lm.vision_token_id == old and hf.get_input_embeddings().weight.shape[0] == old + 1
    torch.testing.assert_close(hf(input_ids=ids).logits[..., :old], before)


def test_set_stage_trainable_sets(model, cfg):
    import copy

    m = copy.deepcopy(model)
    stage = _stage(cfg, "vision").model_copy(update={"vision_trainable_blocks": 1})
    rows = {r["component"]: r for r in m.set_stage(stage)}
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    last = m.vision.num_layers - 1
    assert {n.split(".")[0] for n in trainable} == {"vision", "resampler", "vicreg_projector"}
    vision_trainable = {n for n in trainable if n.startswith("vision.")}
    assert vision_trainable and all(f"layers.{last}." in n or "post_layernorm" in n for n in vision_trainable)
    assert rows["vision"]["mode"] == "last 1 blocks" and rows["language_model"]["trainable"] == 0
    assert rows["vision"]["trainable"] == sum(p.numel() for n, p in m.named_parameters() if n in vision_trainable)
    assert rows["resampler"]["trainable"] == sum(p.numel() for p in m.resampler.parameters())

    m.set_stage(_stage(cfg, "resampler"))
    trainable = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"resampler", "panorama_projector"}

    # The reference table freezes the resampler in stage 3 (the tiny config trains it: checked below).
    rows = {r["component"]: r for r in m.set_stage(_stage(cfg, "finetune").model_copy(update={"resampler": "frozen"}))}
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"panorama_projector", "language_model"}
    assert all("lora_" in n for n in trainable if n.startswith("language_model."))
    lora = [p for n, p in m.language_model.named_parameters() if "lora_A" in n]
    assert lora and lora[0].shape[0] == _stage(cfg, "finetune").lora.r
    assert rows["language_model"]["mode"] == "lora" and rows["vicreg_projector"]["mode"] == "unused"
    m.set_stage(_stage(cfg, "finetune").model_copy(update={"resampler": "full"}))
    trainable = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"resampler", "panorama_projector", "language_model"}
    with pytest.raises(ValueError, match="resampler: mode 'lora' is not supported"):
        m.set_stage(StageConfig(resampler="lora"))


def test_forward_outputs_per_stage(model, cfg):
    import copy

    m = copy.deepcopy(model)
    pixels = torch.rand(1, 9, 3, SIZE, SIZE)
    ids, mask = _text(m, ["<|vision|> what is here? a sofa"])
    m.set_stage(_stage(cfg, "vision"))
    out = m(pixels, VIEWS, ids, mask, ids)
    assert out.loss is None and out.logits is None
    assert out.overlap_features.shape == (1, 8, 8, 8, 128)
    assert [g.index for g in out.tile_geometries] == list(range(1, 9))
    m.set_stage(_stage(cfg, "resampler"))
    out = m(pixels, VIEWS, ids, mask, ids)
    assert torch.isfinite(out.loss) and out.vision_tokens == 352
    assert out.logits.shape[:2] == (1, ids.shape[1] - 1 + 352)
    assert out.overlap_features is not None  # stage 2's auxiliary VICReg term (frozen projector)
    m.set_stage(_stage(cfg, "finetune"))
    assert m(pixels, VIEWS, ids, mask, ids).overlap_features is None


def test_generate_cached_equals_uncached_and_padding_side_does_not_matter(model):
    pixels = torch.rand(2, 9, 3, SIZE, SIZE)
    texts = ["<|vision|> describe", "<|vision|> what colour is the wall?"]
    ids, mask = _text(model, texts, "left")
    kw = {"max_new_tokens": 4, "do_sample": False, "output_scores": True, "return_dict_in_generate": True}
    cached = model.generate(pixels, VIEWS, ids, mask, use_cache=True, **kw)
    uncached = model.generate(pixels, VIEWS, ids, mask, use_cache=False, **kw)
    assert cached.sequences.tolist() == uncached.sequences.tolist()
    # A random tiny LM repeats tokens, so compare the per-step logits too (a cache bug shows there).
    for a, b in zip(cached.scores, uncached.scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # The first step's logits are the forward pass's last-position logits (the placeholder suppressed).
    first = model(pixels, VIEWS, ids, mask).logits[:, -1].clone()
    first[:, model.language_model.vision_token_id] = -float("inf")
    torch.testing.assert_close(cached.scores[0], first, rtol=1e-4, atol=1e-4)
    cached = cached.sequences
    assert cached.shape == (2, 4)
    ids_r, mask_r = _text(model, texts, "right")
    assert model.generate(pixels, VIEWS, ids_r, mask_r, max_new_tokens=4, do_sample=False).tolist() == cached.tolist()
    # The padded sample decodes as it does alone (positions and mask account for the padding).
    short = 0 if mask[0].sum() < mask[1].sum() else 1
    alone_ids, alone_mask = _text(model, [texts[short]])
    alone = model.generate(pixels[short : short + 1], VIEWS, alone_ids, alone_mask, max_new_tokens=4, do_sample=False)
    assert alone.tolist()[0] == cached.tolist()[short]


def test_save_load_round_trip(model, cfg, tmp_path):
    import copy

    m = copy.deepcopy(model)
    m.set_stage(_stage(cfg, "finetune"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "lora_B" in name or name.startswith(("resampler.", "panorama_projector.")):
                p.add_(torch.randn_like(p) * 0.05)
    m.eval()
    pixels = torch.rand(1, 9, 3, SIZE, SIZE)
    ids, mask = _text(m, ["<|vision|> is there a lamp?"])
    before = m(pixels, VIEWS, ids, mask).logits
    m.save_pretrained(tmp_path / "saved")
    saved = set((tmp_path / "saved").iterdir())
    assert {p.name for p in saved} == {"config.yaml", "config.json", "cora_model.json", "trainable.safetensors"}
    loaded = load_model(tmp_path / "saved").eval()
    assert loaded.language_model.has_lora
    after = loaded(pixels, VIEWS, ids, mask).logits
    torch.testing.assert_close(after, before)
    # Only the non-pretrained weights were written: no frozen LM or vision weight.
    from safetensors.torch import load_file

    names = load_file(str(tmp_path / "saved" / "trainable.safetensors")).keys()
    assert not any(n.startswith("language_model.") and "lora_" not in n for n in names)
    assert not any(n.startswith("vision.") for n in names)


def test_meta_build_counts_without_memory(cfg):
    meta = build_model(cfg, meta=True)
    real = build_model(cfg)
    assert all(p.is_meta for p in meta.parameters())
    for component in ("vision", "resampler", "vicreg_projector", "panorama_projector", "language_model"):
        count = sum(p.numel() for p in getattr(meta, component).parameters())
        assert count == sum(p.numel() for p in getattr(real, component).parameters()), component


def test_gradient_checkpointing_keeps_loss_and_gradients(model, cfg):
    import copy

    pixels = torch.rand(1, 9, 3, SIZE, SIZE)
    ids, mask = _text(model, ["<|vision|> a chair"])
    results = []
    for checkpointing in (False, True):
        m = copy.deepcopy(model)
        m.set_stage(_stage(cfg, "finetune"))
        if checkpointing:
            m.enable_gradient_checkpointing()
        m.train()
        for module in m.modules():  # no dropout: the two runs must agree
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        out = m(pixels, VIEWS, ids, mask, ids)
        out.loss.backward()
        results.append((out.loss.detach(), m.panorama_projector.linear.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_siglip2_naflex_patches_follow_the_hf_processor_layout():
    from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches

    from cora.config.base import ArchSpec
    from cora.model.vision import build_vision_backbone

    backbone = build_vision_backbone(
        None,
        ArchSpec(
            model_type="siglip2_vision_model",
            num_patches=16,
            patch_size=4,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
    )
    seen = {}
    backbone.tower.register_forward_pre_hook(lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True)
    image = torch.rand(1, 3, 16, 16)
    assert backbone(image).shape == (1, 16, 8)
    expected = convert_image_to_patches(((image[0] - 0.5) / 0.5).numpy(), 4)
    torch.testing.assert_close(seen["pixel_values"][0], torch.from_numpy(expected))
    assert seen["spatial_shapes"].tolist() == [[4, 4]]


def test_saved_config_points_at_absolute_local_folders(cfg, kit_paths, tmp_path, monkeypatch):
    import os

    from cora.config import load_config

    monkeypatch.chdir(kit_paths.root)
    models = cfg.models.model_copy(update={"vision_name": "vision", "language_model_name": "language_model"})
    m = build_model(cfg.model_copy(update={"models": models}))
    m.save_pretrained(tmp_path / "saved")
    saved = load_config(tmp_path / "saved" / "config.yaml")
    assert saved.models.vision_name == os.path.realpath(kit_paths.vision)
    monkeypatch.chdir(tmp_path)
    assert load_model(tmp_path / "saved").vision.grid == 8


def test_dual_encoder_checkpoint_yields_its_vision_half(tmp_path):
    """``google/siglip2-so400m-patch16-256`` is a full SigLIP (text + vision): load the vision half."""
    from transformers import SiglipConfig, SiglipModel

    from cora.model.vision import build_vision_backbone

    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = SiglipConfig(
        text_config={**small, "vocab_size": 50}, vision_config={**small, "image_size": 16, "patch_size": 4}
    )
    full = SiglipModel(config)
    full.save_pretrained(tmp_path / "siglip")
    backbone = build_vision_backbone(str(tmp_path / "siglip"))
    assert type(backbone.tower).__name__ == "SiglipVisionModel" and backbone.num_tokens == 16
    torch.testing.assert_close(
        backbone.tower.get_parameter("embeddings.patch_embedding.weight"),
        full.vision_model.embeddings.patch_embedding.weight,
    )


def test_clip_tower_with_identity_resampler_end_to_end(kit_paths):
    from cora.config.base import ArchSpec
    from cora.model.language import build_language_model
    from cora.model.projectors import PanoramaProjector, VICRegProjector
    from cora.model.resamplers import build_resampler
    from cora.model.vision import build_vision_backbone
    from cora.model.vlm import PanoramaVLM

    vision = build_vision_backbone(
        None,
        ArchSpec(
            model_type="clip_vision_model",
            image_size=32,
            patch_size=8,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
    )
    lm = build_language_model(str(kit_paths.language_model))
    m = PanoramaVLM(
        vision,
        build_resampler("identity", 16, 16),
        VICRegProjector(16, 16, 16),
        PanoramaProjector(16, lm.hidden_size),
        lm,
    )
    views = plan_views(ImageProcessingConfig(image_size=32))
    ids = torch.tensor([[lm.vision_token_id, 50, 60]])
    out = m(torch.rand(1, 9, 3, 32, 32), views, ids, labels=ids)
    assert out.vision_tokens == 16 + 4 * (4 + 7 * 2) and torch.isfinite(out.loss)
    assert out.overlap_features.shape == (1, 8, 4, 4, 16)


def test_lora_defaults_are_the_spec_ones(model):
    import copy

    m = copy.deepcopy(model)
    m.set_stage(StageConfig(language_model="lora", vicreg_projector="unused"))
    assert m.language_model.lora_settings == {
        "r": 32,
        "alpha": 64,
        "dropout": 0.1,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }
    names = [n for n, _ in m.language_model.named_parameters() if "lora_A" in n]
    wrapped = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in names}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_generation_never_emits_the_vision_placeholder(cfg, monkeypatch):
    # A sampled placeholder cannot be fed back (fusion needs exactly one per panorama), and an rl stage
    # trains on its own samples: generate suppresses it, whatever else the caller suppresses.
    model = build_model(cfg).eval()
    vid = model.language_model.vision_token_id
    seen = {}
    real = model.language_model.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(model.language_model.model, "generate", spy)
    ids, mask = _text(model, ["<|vision|> what is here"])
    pixels = torch.rand(1, len(VIEWS), 3, SIZE, SIZE)
    out = model.generate(pixels, VIEWS, ids, mask, max_new_tokens=3, do_sample=True, suppress_tokens=[7])
    assert set(seen["suppress_tokens"]) == {vid, 7}
    assert vid not in out.flatten().tolist()


def test_a_saved_model_refuses_other_base_weights_naming_both(model, cfg, kit_paths, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from cora.model.vlm import BaseModelMismatch, PanoramaVLM

    saved = model.save_pretrained(tmp_path / "saved", run_config=cfg)
    meta = json.loads((saved / "cora_model.json").read_text())
    assert set(meta["base"]) == {"vision", "language_model"}
    PanoramaVLM.from_pretrained(saved)  # the same base: fine
    # The kit LM rebuilt with other weights (one tensor changed), the saved model pointed at it.
    other = tmp_path / "other_lm"
    shutil.copytree(kit_paths.language_model, other)
    weights = load_file(other / "model.safetensors")
    first = sorted(weights)[0]
    weights[first] = weights[first] + 1e-3
    save_file(weights, other / "model.safetensors")
    config_file = saved / "config.yaml"
    config_file.write_text(config_file.read_text().replace(str(Path(kit_paths.language_model).resolve()), str(other)))
    with pytest.raises(
        BaseModelMismatch, match=r"trained on the language_model .* with weights [0-9a-f]{12}.*now holds"
    ):
        PanoramaVLM.from_pretrained(saved)
    PanoramaVLM.from_pretrained(saved, allow_base_mismatch=True)  # explicitly: loads, with a warning
