"""Language fusion: each ``<|vision|>`` placeholder becomes that sample's vision tokens.

``[BOS] <|vision|> question answer [EOS]`` → ``[BOS] v1 … vN question answer [EOS]``, with the
attention mask, position ids and labels (-100 on the vision tokens) stretched to match.
Works with left or right padding: every sample grows by the same amount, so the padding
stays where it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass
class FusedInputs:
    inputs_embeds: torch.Tensor  # [B, T', H]
    attention_mask: torch.Tensor  # [B, T']
    position_ids: torch.Tensor  # [B, T']
    labels: torch.Tensor | None  # [B, T']


def fuse_vision(
    input_ids: torch.Tensor,
    text_embeds: torch.Tensor,
    vision: torch.Tensor,
    vision_token_id: int,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> FusedInputs:
    """Splice ``vision`` into ``text_embeds`` at the placeholders.

    ``input_ids [B, T]``, ``text_embeds [B, T, H]``, ``vision [B, N, H]`` (one panorama per
    sample) or ``[B, P, N, H]`` (P panoramas, P placeholders per sample, in order).
    """
    if vision.dim() == 3:
        vision = vision.unsqueeze(1)
    batch, panoramas, n_vision, _ = vision.shape
    if input_ids.shape[0] != batch:
        raise ValueError(f"{input_ids.shape[0]} text samples but {batch} panoramas' vision tokens")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    is_vision = input_ids == vision_token_id
    counts = is_vision.sum(dim=1).tolist()
    bad = [(b, c) for b, c in enumerate(counts) if c != panoramas]
    if bad:
        listing = ", ".join(f"sample {b}: {c}" for b, c in bad[:5])
        raise ValueError(
            f"each sample needs exactly {panoramas} <|vision|> placeholder(s) (one per panorama), "
            f"found {listing} (token id {vision_token_id})"
        )
    embeds, masks, labs = [], [], []
    for b in range(batch):
        places = torch.nonzero(is_vision[b]).flatten().tolist()
        starts = [0] + [p + 1 for p in places]
        ends = [*places, input_ids.shape[1]]
        e_parts, m_parts, l_parts = [], [], []
        for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
            e_parts.append(text_embeds[b, s:e])
            m_parts.append(attention_mask[b, s:e])
            if labels is not None:
                l_parts.append(labels[b, s:e])
            if k < panoramas:
                e_parts.append(vision[b, k].to(text_embeds.dtype))
                m_parts.append(attention_mask.new_ones(n_vision))
                if labels is not None:
                    l_parts.append(labels.new_full((n_vision,), IGNORE_INDEX))
        embeds.append(torch.cat(e_parts))
        masks.append(torch.cat(m_parts))
        if labels is not None:
            labs.append(torch.cat(l_parts))
    mask = torch.stack(masks)
    position_ids = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    return FusedInputs(torch.stack(embeds), mask, position_ids, torch.stack(labs) if labels is not None else None)


def left_padded(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as ``input_ids`` / ``attention_mask [B, T]``, left padded: every prompt ends where
    generation starts."""
    length = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, ids in enumerate(sequences):
        input_ids[i, length - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[i, length - len(ids) :] = 1
    return input_ids, attention_mask


def to_left_padding(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move right padding to the left (generation appends tokens at the right end)."""
    lengths = attention_mask.sum(dim=1)
    ids = torch.full_like(input_ids, pad_id)
    mask = torch.zeros_like(attention_mask)
    width = input_ids.shape[1]
    for b in range(input_ids.shape[0]):
        valid = input_ids[b][attention_mask[b].bool()]
        ids[b, width - int(lengths[b]) :] = valid
        mask[b, width - int(lengths[b]) :] = 1
    return ids, mask


class LanguageFusion(torch.nn.Module):
    """:func:`fuse_vision` with the placeholder id bound (no parameters)."""

    def __init__(self, vision_token_id: int) -> None:
        super().__init__()
        self.vision_token_id = vision_token_id

    def forward(
        self,
        input_ids: torch.Tensor,
        text_embeds: torch.Tensor,
        vision: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> FusedInputs:
        return fuse_vision(input_ids, text_embeds, vision, self.vision_token_id, attention_mask, labels)
