"""LanguageFusion: vision tokens replace the placeholder; masks, positions and labels follow."""

from __future__ import annotations

import pytest
import torch

from cora.model.fusion import IGNORE_INDEX, LanguageFusion, to_left_padding

VIS, PAD = 99, 0


def _embed(ids):
    return ids.float().unsqueeze(-1).expand(*ids.shape, 3).clone()


def test_vision_tokens_land_exactly_where_the_placeholder_was():
    ids = torch.tensor([[1, VIS, 5, 6, 7], [1, 2, VIS, 6, 7]])
    labels = torch.tensor([[-100, -100, -100, 6, 7], [-100, -100, -100, 6, 7]])
    vision = -torch.arange(1, 2 * 4 * 3 + 1, dtype=torch.float).view(2, 4, 3)
    out = LanguageFusion(VIS)(ids, _embed(ids), vision, labels=labels)
    assert out.inputs_embeds.shape == (2, 8, 3)
    torch.testing.assert_close(out.inputs_embeds[0, 1:5], vision[0])
    torch.testing.assert_close(out.inputs_embeds[1, 2:6], vision[1])
    assert out.inputs_embeds[0, :, 0].tolist()[5:] == [5, 6, 7] and out.inputs_embeds[1, :, 0].tolist()[:2] == [1, 2]
    assert out.labels[0].tolist() == [-100] * 6 + [6, 7]
    assert out.labels[1].tolist() == [-100] * 6 + [6, 7]
    assert out.attention_mask.tolist() == [[1] * 8] * 2
    assert out.position_ids.tolist() == [list(range(8))] * 2


def test_vision_labels_are_ignored_even_when_given_as_targets():
    ids = torch.tensor([[VIS, 5, 6]])
    out = LanguageFusion(VIS)(ids, _embed(ids), torch.zeros(1, 3, 3), labels=ids.clone())
    assert out.labels.tolist() == [[IGNORE_INDEX] * 3 + [5, 6]]


def test_right_padding_stays_right():
    ids = torch.tensor([[1, VIS, 5, 6], [1, VIS, 5, PAD]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    out = LanguageFusion(VIS)(ids, _embed(ids), torch.zeros(2, 3, 3), attention_mask=mask)
    assert out.attention_mask.tolist() == [[1] * 6, [1] * 5 + [0]]
    assert out.position_ids[1].tolist()[:5] == [0, 1, 2, 3, 4]


def test_left_padding_stays_left_and_positions_start_at_first_real_token():
    ids = torch.tensor([[PAD, PAD, 1, VIS, 5], [1, 2, 3, VIS, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    out = LanguageFusion(VIS)(ids, _embed(ids), torch.ones(2, 2, 3), attention_mask=mask)
    assert out.attention_mask[0].tolist() == [0, 0, 1, 1, 1, 1]
    assert out.position_ids[0].tolist() == [0, 0, 0, 1, 2, 3]
    assert out.position_ids[1].tolist() == [0, 1, 2, 3, 4, 5]


def test_several_panoramas_per_sample_in_order():
    ids = torch.tensor([[VIS, 7, VIS, 8]])
    vision = torch.stack([torch.full((2, 3), 10.0), torch.full((2, 3), 20.0)]).unsqueeze(0)  # [1, 2, 2, 3]
    out = LanguageFusion(VIS)(ids, _embed(ids), vision)
    assert out.inputs_embeds[0, :, 0].tolist() == [10, 10, 7, 20, 20, 8]


@pytest.mark.parametrize("ids,expected", [([[1, 2, 3]], "sample 0: 0"), ([[VIS, VIS, 3]], "sample 0: 2")])
def test_placeholder_count_mismatch_is_a_clear_error(ids, expected):
    ids = torch.tensor(ids)
    with pytest.raises(ValueError, match=f"exactly 1 <\\|vision\\|> placeholder.*{expected}"):
        LanguageFusion(VIS)(ids, _embed(ids), torch.zeros(1, 2, 3))


def test_batch_size_mismatch_is_an_error():
    ids = torch.tensor([[VIS, 1]])
    with pytest.raises(ValueError, match="1 text samples but 2 panoramas"):
        LanguageFusion(VIS)(ids, _embed(ids), torch.zeros(2, 2, 3))


def test_to_left_padding():
    ids = torch.tensor([[1, 2, 3], [4, 5, PAD]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    new_ids, new_mask = to_left_padding(ids, mask, PAD)
    assert new_ids.tolist() == [[1, 2, 3], [PAD, 4, 5]] and new_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
