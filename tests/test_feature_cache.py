"""The frozen-tower feature cache: hits, misses, invalidation (geometry, weights), disk, same training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cora.config import load_config
from cora.config.sections.image import ImageProcessingConfig
from cora.model import build_model
from cora.processors.views import plan_views

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
VIEWS = plan_views(ImageProcessingConfig(image_size=SIZE))


@pytest.fixture()
def model(tiny_config, kit_paths):
    models = tiny_config.models.model_copy(
        update={"vision_name": str(kit_paths.vision), "language_model_name": str(kit_paths.language_model)}
    )
    model = build_model(tiny_config.model_copy(update={"models": models})).eval()
    model.vision.set_trainable_blocks(0)  # a frozen tower, as in every stage but the first
    return model


def test_a_frozen_tower_is_run_once_per_panorama(model):
    pixels = torch.rand(2, len(VIEWS), 3, SIZE, SIZE)
    plain = model.encode_vision(pixels, VIEWS).tokens
    model.enable_feature_cache(max_items=8)
    cache = model.feature_cache
    first = model.encode_vision(pixels, VIEWS).tokens
    assert (cache.hits, cache.misses) == (0, 2)
    again = model.encode_vision(pixels, VIEWS).tokens
    assert (cache.hits, cache.misses) == (2, 2)
    torch.testing.assert_close(first, plain, rtol=0, atol=1e-6)
    assert torch.equal(first, again)
    # One new panorama in the batch: one miss, the other a hit.
    mixed = torch.stack([pixels[0], torch.rand(len(VIEWS), 3, SIZE, SIZE)])
    model.encode_vision(mixed, VIEWS)
    assert (cache.hits, cache.misses) == (3, 3)


def test_other_geometry_or_other_tower_weights_never_read_stale_features(model):
    model.enable_feature_cache()
    cache = model.feature_cache
    pixels = torch.rand(1, len(VIEWS), 3, SIZE, SIZE)
    model.encode_vision(pixels, VIEWS)
    # The same pixels under other geometries (e.g. a changed FOV): another key.
    other = plan_views(ImageProcessingConfig(image_size=SIZE, fov_deg=100))[: len(VIEWS)]
    model.encode_vision(pixels, other)
    assert (cache.hits, cache.misses) == (0, 2)
    # A stage that trains the tower does not use the cache at all...
    model.vision.set_trainable_blocks(-1)
    model.encode_vision(pixels, VIEWS)
    assert (cache.hits, cache.misses) == (0, 2)
    # ...and once its weights moved, the frozen tower has another fingerprint: recomputed, not read.
    with torch.no_grad():
        next(model.vision.parameters()).add_(0.01)
    model.vision.set_trainable_blocks(0)
    fresh = model.encode_vision(pixels, VIEWS).tokens
    assert (cache.hits, cache.misses) == (0, 3)
    model.feature_cache = None
    torch.testing.assert_close(fresh, model.encode_vision(pixels, VIEWS).tokens, rtol=0, atol=1e-6)


def test_features_survive_on_disk(model, tmp_path):
    pixels = torch.rand(1, len(VIEWS), 3, SIZE, SIZE)
    model.enable_feature_cache(disk_dir=tmp_path / "tower")
    first = model.encode_vision(pixels, VIEWS).tokens
    assert len(list((tmp_path / "tower").glob("*.safetensors"))) == 1
    model.enable_feature_cache(disk_dir=tmp_path / "tower")  # a new process: empty memory
    assert torch.equal(model.encode_vision(pixels, VIEWS).tokens, first)
    assert (model.feature_cache.hits, model.feature_cache.misses) == (1, 0)


@pytest.mark.slow
def test_training_with_the_cache_ends_with_the_same_weights(tmp_path, kit_paths, synth):
    results = {}
    for mode in ("none", "disk"):
        cfg = tmp_path / f"{mode}.yaml"
        cfg.write_text(
            f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n"
            f"experiment: {{name: fc-{mode}, output_dir: {tmp_path / 'runs'}}}\n"
            f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
            f"data: {{train: {synth / 'train.csv'}, val: null, view_cache: 0}}\n"
            f"training:\n  stages: [resampler, finetune]\n  feature_cache: {mode}\n  progress_bar: false\n"
            "  loggers: [csv]\n  stage_configs:\n    resampler: {max_steps: 3, batch_size: 2}\n"
            "    finetune: {max_steps: 3, batch_size: 2}\n"
        )
        from cora.training.runner import train

        results[mode] = train(load_config(cfg)).model.trainable_state_dict()
    assert (tmp_path / "runs/fc-disk/cache/tower").is_dir()
    for name, tensor in results["none"].items():
        torch.testing.assert_close(results["disk"][name], tensor, rtol=0, atol=1e-6, msg=name)
