"""Adapted VLMs: a forward/backward per family and input mode, the overlap loss on the graph, health checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.adapt.encode import IGNORE, EncodedBatch, encode_batch
from cora.adapt.families import FAMILIES, get_family
from cora.adapt.health import HealthCheckError, check_batch
from cora.adapt.inputs import INPUT_MODES, PanoramaInputs
from cora.adapt.model import AdaptedVLM
from cora.adapt.overlap import build_overlap_loss
from cora.config.schema import ImageProcessingConfig, LossConfig

ERP = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
IMAGE_CFG = ImageProcessingConfig(image_size=64)
QUERIES = ["What is behind you?", "Describe the panorama."]
ANSWERS = ["a red cube", "two boxes and a tall tree to the left"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request):
    family = get_family(request.param)
    model, processor = family.build_tiny(64)
    return family, model, processor


def _batch(family, processor, mode):
    pano = PanoramaInputs(mode, IMAGE_CFG, native_height=32)(ERP)
    return encode_batch(family, processor, [pano, pano], QUERIES, ANSWERS)


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_forward_backward_per_input_mode(tiny, mode):
    family, model, processor = tiny
    if mode in ("cubemap", "anyres_e2p") and not family.multi_image:
        with pytest.raises(ValueError, match="one image per turn"):
            _batch(family, processor, mode)
        return
    batch = _batch(family, processor, mode)
    adapted = AdaptedVLM(family, model, processor)
    model.zero_grad()
    out = adapted(batch)
    assert torch.isfinite(out.loss) and out.overlap_loss is None
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # labels: only the answers (+ end-of-turn) are supervised
    tok = processor.tokenizer
    for b, answer in enumerate(ANSWERS):
        labelled = batch.inputs["labels"][b][batch.inputs["labels"][b] != IGNORE]
        assert tok.decode(labelled).strip().startswith(answer)
        assert int(labelled[-1]) == tok.convert_tokens_to_ids(family.end_of_turn)


@pytest.mark.parametrize("loss_type", ["vicreg_pairwise", "densecl"])
def test_overlap_loss_is_attached_to_the_aligner(tiny, loss_type):
    family, model, processor = tiny
    if family.name == "blip2":
        pytest.skip("blip2 is a plain baseline (no patch grid)")
    batch = _batch(family, processor, "anyres_e2p")
    adapted = AdaptedVLM(
        family, model, processor, overlap_loss=build_overlap_loss(LossConfig(type=loss_type)), overlap_weight=0.5
    )
    model.zero_grad()
    out = adapted(batch)
    assert torch.isfinite(out.overlap_loss) and out.overlap_loss.requires_grad
    assert torch.allclose(out.loss, out.lm_loss + 0.5 * out.overlap_loss)
    out.overlap_loss.backward()
    merger = [p for n, p in model.named_parameters() if any(a in n for a in family.aligner_modules)]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in merger)
    llm = [p for n, p in model.named_parameters() if n.startswith(family.language_model_prefix)]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in llm)  # the overlap loss never reaches the LLM


def test_overlap_loss_needs_tiles(tiny):
    family, model, processor = tiny
    if family.name == "blip2":
        pytest.skip("blip2 is a plain baseline")
    adapted = AdaptedVLM(family, model, processor, overlap_loss=build_overlap_loss(LossConfig()), overlap_weight=1.0)
    with pytest.raises(ValueError, match="needs perspective tiles"):
        adapted(_batch(family, processor, "resize"))


def _broken(batch: EncodedBatch, **inputs) -> EncodedBatch:
    return EncodedBatch({**batch.inputs, **inputs}, batch.geometries, batch.num_images)


def test_health_checks_catch_broken_batches(tiny):
    family, model, processor = tiny
    batch = _batch(family, processor, "anyres_e2p" if family.multi_image else "resize")
    check_batch(family, processor, model, batch)  # the real batch is healthy
    ids, labels = batch.inputs["input_ids"], batch.inputs["labels"]
    image_id = family.image_token_id(processor)
    n_images = batch.num_images[0]

    more = EncodedBatch(batch.inputs, batch.geometries, [n_images + 1, n_images])
    with pytest.raises(HealthCheckError, match=rf"sample 0: {n_images} image placeholder run\(s\).*{n_images + 1}"):
        check_batch(family, processor, model, more)

    short = ids.clone()
    first = int((short[0] == image_id).nonzero()[0])
    short[0, first] = processor.tokenizer.pad_token_id  # one vision token fewer than the grid gives
    with pytest.raises(HealthCheckError, match="sample 0, image 0: .* image tokens but its grid expands to"):
        check_batch(family, processor, model, _broken(batch, input_ids=short))

    with pytest.raises(HealthCheckError, match="image tokens carry labels"):
        check_batch(family, processor, model, _broken(batch, labels=ids.clone()))

    prompt = labels.clone()
    start = int((prompt[1] != IGNORE).nonzero()[0])
    prompt[1, start - 1] = ids[1, start - 1]  # the last prompt token labelled
    with pytest.raises(HealthCheckError, match="sample 1: labels start at token .* prompt must be masked"):
        check_batch(family, processor, model, _broken(batch, labels=prompt))

    no_eot = labels.clone()
    last = int((no_eot[0] != IGNORE).nonzero()[-1])
    no_eot[0, last] = IGNORE
    with pytest.raises(HealthCheckError, match="sample 0: the labelled span ends with .* not the end-of-turn"):
        check_batch(family, processor, model, _broken(batch, labels=no_eot))

    with pytest.raises(HealthCheckError, match="sample 1: no labelled tokens"):
        check_batch(
            family,
            processor,
            model,
            _broken(batch, labels=torch.where(torch.arange(labels.shape[0]).view(-1, 1) == 1, IGNORE, labels)),
        )


def test_adapted_model_runs_health_checks_on_the_first_batch_only(tiny):
    family, model, processor = tiny
    batch = _batch(family, processor, "resize")
    adapted = AdaptedVLM(family, model, processor)
    broken = _broken(batch, labels=batch.inputs["input_ids"].clone())
    with pytest.raises(HealthCheckError):
        adapted(broken)
    adapted(batch)
    adapted(broken)  # checked once: later batches are not re-checked


def test_overlap_strips_of_a_real_panorama_match_on_the_vlm_features(tiny, shared_data):
    """On a real panorama the paired strips of adjacent tiles (grid orientation + geometry) are much closer in
    the VLM's own aligner features than strips of other tile pairs."""
    from cora.adapt.overlap import stack_tiles
    from cora.training.losses.strips import extract_strips

    family, model, processor = tiny
    if family.name == "blip2":
        pytest.skip("blip2 is a plain baseline")
    pano = PanoramaInputs("anyres_e2p", IMAGE_CFG)(shared_data / "panoramas" / "labelled-cube-1024x512.png")
    batch = encode_batch(family, processor, [pano], ["q"], ["a"])
    with torch.no_grad():
        grids = family.feature_grids(family.encode_images(model, batch.inputs), batch.inputs, model)
    left, right = extract_strips(*stack_tiles(grids, batch.geometries), 1)
    matched = (left - right).norm(dim=-1).mean()
    other_pairs = (left - right.roll(3, dims=0)).norm(dim=-1).mean()
    assert matched < 0.6 * other_pairs
