from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel, AutoModelForCausalLM, AutoTokenizer

from cora.config import ArchSpec, load_config
from cora.kit import VISION_TOKEN, build_kit
from cora.model.arch import hf_config_from_arch

from .conftest import CONFIGS


def test_kit_folders_load_back_offline(kit_paths, tiny_config) -> None:
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    vision = AutoModel.from_pretrained(kit_paths.vision)
    spec = tiny_config.kit.vision.hf_kwargs()
    assert vision.config.model_type == "siglip_vision_model"
    assert vision.config.hidden_size == spec["hidden_size"]
    pixels = torch.randn(2, 3, spec["image_size"], spec["image_size"])
    out = vision(pixel_values=pixels).last_hidden_state
    assert out.shape == (2, (spec["image_size"] // spec["patch_size"]) ** 2, spec["hidden_size"])

    processor = AutoImageProcessor.from_pretrained(kit_paths.vision)
    assert processor.size == {"height": spec["image_size"], "width": spec["image_size"]}

    lm = AutoModelForCausalLM.from_pretrained(kit_paths.language_model)
    tok = AutoTokenizer.from_pretrained(kit_paths.language_model)
    assert lm.config.model_type == "qwen3"
    assert lm.get_input_embeddings().num_embeddings == len(tok)
    assert lm.config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert lm.generation_config.do_sample is False
    ids = tok("a red sphere", return_tensors="pt")["input_ids"]
    assert lm(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))


@pytest.mark.parametrize(
    "text", ["A large red sphere behind you to the left.", "Ünïcode 你好 360°\n\ttabs", "  leading spaces", ""]
)
def test_tokenizer_round_trips_text(kit_paths, text: str) -> None:
    tok = AutoTokenizer.from_pretrained(kit_paths.language_model)
    assert tok.decode(tok(text)["input_ids"]) == text


def test_tokenizer_has_the_special_tokens(kit_paths) -> None:
    tok = AutoTokenizer.from_pretrained(kit_paths.language_model)
    for special in (VISION_TOKEN, "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>"):
        ids = tok(f"x {special} y", add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids(special) in ids, special  # one token, never split
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"


def test_chat_template_renders_qwen3_style(kit_paths) -> None:
    tok = AutoTokenizer.from_pretrained(kit_paths.language_model)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"{VISION_TOKEN}\nWhat is behind you?"},
        {"role": "assistant", "content": "A blue cube."},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        f"<|im_start|>user\n{VISION_TOKEN}\nWhat is behind you?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\nA blue cube.<|im_end|>\n"
    )
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert tok.decode(ids) == text


def test_kit_is_deterministic_and_reused(tmp_path, tiny_config) -> None:
    a = build_kit(tiny_config.kit, out_dir=tmp_path / "a", seed=3)
    b = build_kit(tiny_config.kit, out_dir=tmp_path / "b", seed=3)
    for name in ("tokenizer.json", "model.safetensors"):
        assert (a.language_model / name).read_bytes() == (b.language_model / name).read_bytes(), name
    stamp = (a.language_model / "model.safetensors").stat().st_mtime_ns
    build_kit(tiny_config.kit, out_dir=tmp_path / "a", seed=3)  # up to date: not rebuilt
    assert (a.language_model / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads(a.manifest.read_text())["language_model"]["model_type"] == "qwen3"


def test_partial_kit_is_rebuilt(tmp_path, tiny_config) -> None:
    paths = build_kit(tiny_config.kit, out_dir=tmp_path / "k", seed=0)
    paths.manifest.unlink()  # as if the build was interrupted before its last write
    (paths.vision / "stale.txt").write_text("old")
    build_kit(tiny_config.kit, out_dir=tmp_path / "k", seed=0)
    assert paths.manifest.is_file() and not (paths.vision / "stale.txt").exists()


def test_reference_architecture_builds_with_the_right_sizes() -> None:
    cfg = load_config(CONFIGS / "reference-arch.yaml")
    lm_cfg = hf_config_from_arch(cfg.models.language_model_arch)
    vis_cfg = hf_config_from_arch(cfg.models.vision_arch)
    # Meta device: shapes and parameter counts without allocating ~1B weights.
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(lm_cfg)
        vision = AutoModel.from_config(vis_cfg)
    assert (lm.config.hidden_size, lm.config.num_hidden_layers, lm.config.vocab_size) == (1024, 28, 151936)
    # Qwen3-0.6B: 596M parameters with tied embeddings; SigLIP so400m/16 vision tower: ~428M.
    assert 0.58e9 < lm.num_parameters() < 0.61e9
    assert 0.40e9 < vision.num_parameters() < 0.44e9
    assert vision.config.image_size // vision.config.patch_size == 16


def test_small_architecture_builds_exactly() -> None:
    spec = ArchSpec(
        model_type="llama",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    model = AutoModelForCausalLM.from_config(hf_config_from_arch(spec))
    assert len(model.model.layers) == 3
    assert model.model.embed_tokens.weight.shape == (100, 32)
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (2 * 8, 32)


def test_unknown_arch_field_and_type_are_errors() -> None:
    expected = r"qwen3: unknown config field\(s\) 'hiden_size' \(did you mean 'hidden_size'\?\)"
    with pytest.raises(ValueError, match=expected):
        hf_config_from_arch(ArchSpec(model_type="qwen3", hiden_size=8))
    with pytest.raises(ValueError, match=r"unknown HF model_type 'qwen4'.*did you mean"):
        hf_config_from_arch(ArchSpec(model_type="qwen4"))
