"""Tiny random models of every supported VLM family run a forward/backward with their own processor's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.adapt.families import FAMILIES, get_family
from cora.adapt.families.base import token_runs

SIZE = 64


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request):
    family = get_family(request.param)
    model, processor = family.build_tiny(SIZE)
    return family, model, processor


def _inputs(family, processor, n_images):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n_images)]
    messages = [
        {"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": "What is here?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a red cube"}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    inputs = dict(processor(text=[text], images=[images], return_tensors="pt"))
    return text, {**inputs, **family.extra_inputs(processor, images)}


def test_unknown_family_lists_valid_names():
    with pytest.raises(ValueError, match="adapt.family: unknown VLM family 'llava'; valid: .*qwen2_5_vl"):
        get_family("llava")


def test_template_writes_placeholders_and_processor_expands_them(tiny):
    family, model, processor = tiny
    n = 2 if family.multi_image else 1
    text, inputs = _inputs(family, processor, n)
    runs = token_runs(inputs["input_ids"][0], family.image_token_id(processor))
    assert len(runs) == n  # one expanded run per image, from the template's placeholder
    assert [e - s for s, e in runs] == family.image_token_counts(inputs, model)
    if family.multi_image:  # the template wrote one placeholder per image, the processor expanded it
        assert text.count(str(processor.image_token)) == n


def test_forward_backward_and_feature_grids(tiny):
    family, model, processor = tiny
    n = 2 if family.multi_image else 1
    _, inputs = _inputs(family, processor, n)
    model.zero_grad()
    encoded = family.encode_images(model, inputs)
    extra = {"mm_encoder_outputs": {"image": encoded}} if family.precomputed else {}
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        labels=inputs["input_ids"],
        **family.forward_kwargs(inputs),
        **extra,
    )
    assert torch.isfinite(out.loss)
    out.loss.backward()
    aligner = [p for name, p in model.named_parameters() if any(a in name for a in family.aligner_modules)]
    assert aligner and any(p.grad is not None and p.grad.abs().sum() > 0 for p in aligner)
    if family.name == "blip2":
        with pytest.raises(ValueError, match="plain baseline"):
            family.feature_grids(encoded, inputs, model)
        return
    grids = family.feature_grids(encoded, inputs, model)
    assert len(grids) == n
    hidden = model.config.get_text_config().hidden_size
    for grid, count in zip(grids, family.image_token_counts(inputs, model), strict=True):
        assert grid.shape == (4, 4, hidden)  # 64 px, patch 8, 2×2 merge/shuffle/pool -> 4×4 tokens
        assert grid.shape[0] * grid.shape[1] == count


@pytest.mark.parametrize("half", ["top", "left"])
def test_feature_grids_keep_the_image_orientation(tiny, half):
    """Grid cell (r, c) holds the tokens of image row r, column c (the overlap strips rely on it)."""
    family, model, processor = tiny
    if family.name == "blip2":
        pytest.skip("blip2 is a plain baseline (no patch grid)")
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    if half == "top":
        image[: SIZE // 2] = 255
    else:
        image[:, : SIZE // 2] = 255
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = {
        **processor(text=[text], images=[[image]], return_tensors="pt"),
        **family.extra_inputs(processor, [image]),
    }
    with torch.no_grad():
        grid = family.feature_grids(family.encode_images(model, inputs), inputs, model)[0]
    across_rows = (grid[0] - grid[-1]).norm(dim=-1).mean()  # first vs last row
    across_cols = (grid[:, 0] - grid[:, -1]).norm(dim=-1).mean()  # first vs last column
    if half == "top":
        assert across_rows > 5 * across_cols
    else:
        assert across_cols > 5 * across_rows
