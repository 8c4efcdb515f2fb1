"""Generation with PanoRoPE: the cached HF generate gives the same scores as full forwards of the training path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.adapt.encode import EncodedBatch, encode_batch
from cora.adapt.families import FAMILIES, get_family
from cora.adapt.inputs import PanoramaInputs
from cora.adapt.model import AdaptedVLM
from cora.config.schema import ImageProcessingConfig

ERP = np.random.default_rng(2).integers(0, 255, (64, 128, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_generate_matches_full_forward_and_left_padding(name):
    family = get_family(name)
    model, processor = family.build_tiny(64, seed=1)
    pano = PanoramaInputs("anyres_e2p" if family.multi_image else "resize", ImageProcessingConfig(image_size=64))(ERP)
    adapted = AdaptedVLM(family, model, processor, health_checks=False).eval()
    single = encode_batch(family, processor, [pano], ["Where?"])
    out = adapted.generate(single, max_new_tokens=3, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[:, single.inputs["input_ids"].shape[1] :]

    # Full forward over prompt + generated tokens: the step scores are its logits at the last prompt positions.
    ids = out.sequences[:, :-1]
    extra = ids.shape[1] - single.inputs["input_ids"].shape[1]
    grown = dict(single.inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
    for key in ("mm_token_type_ids", "token_type_ids"):
        if key in grown:
            grown[key] = torch.cat([grown[key], grown[key].new_zeros(1, extra)], dim=1)
    with torch.no_grad():
        logits = adapted(EncodedBatch(grown, single.geometries, single.num_images)).logits
    image_id = adapted.family.image_token_id(adapted.processor)
    for step, scores in enumerate(out.scores):
        expected = logits[0, -len(out.scores) + step].clone()
        expected[image_id] = -float("inf")  # generation never samples an image token
        assert torch.allclose(scores[0], expected, atol=1e-4)

    # The same prompt left padded beside a longer one generates the same tokens.
    pair = encode_batch(family, processor, [pano, pano], ["What is to the left of the big red cube?", "Where?"])
    assert not pair.inputs["attention_mask"][1].all()  # padded (left; BLIP-2 pads after its query tokens)
    assert torch.equal(adapted.generate(pair, max_new_tokens=3)[1], new[0])
