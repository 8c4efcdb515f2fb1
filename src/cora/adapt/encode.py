"""Panorama + question (+ answer) → the family processor's batch, with assistant-only labels.

Template first: messages carry one ``{"type": "image"}`` item per view, the family's chat template
writes its placeholder, and its processor expands it; nothing here writes image tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import ProcessorMixin

from cora.adapt.families.base import VLMFamily
from cora.adapt.inputs import PanoramaInput
from cora.processors.geometry import ViewGeometry

IGNORE = -100


@dataclass
class EncodedBatch:
    """Processor outputs (``input_ids``/``attention_mask``/``labels`` ``[B, T]``, pixels, grids) + per-sample views."""

    inputs: dict[str, Any]
    geometries: list[list[ViewGeometry]]
    num_images: list[int]


def build_messages(
    num_images: int, query: str, answer: str | None = None, system_prompt: str | None = None
) -> list[dict]:
    messages: list[dict] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": query}]
    messages.append({"role": "user", "content": content})
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _find_last(row: list[int], needle: list[int]) -> int:
    for start in range(len(row) - len(needle), -1, -1):
        if row[start : start + len(needle)] == needle:
            return start
    return -1


def assistant_labels(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, family: VLMFamily, processor: ProcessorMixin
) -> torch.Tensor:
    """Labels ``[B, T]``: the answer after the last assistant header through its end-of-turn token; -100 elsewhere.

    A row without the header or the end-of-turn keeps no labels; the health checks report it.
    """
    tok = processor.tokenizer
    header = tok(family.assistant_header, add_special_tokens=False)["input_ids"]
    eot = tok.convert_tokens_to_ids(family.end_of_turn)
    labels = torch.full_like(input_ids, IGNORE)
    for b, (row, mask) in enumerate(zip(input_ids.tolist(), attention_mask.tolist(), strict=True)):
        length = int(sum(mask))
        row = row[:length]  # right padding
        start = _find_last(row, header)
        if start < 0:
            continue
        first = start + len(header)
        ends = [i for i in range(first, length) if row[i] == eot]
        if ends:
            labels[b, first : ends[0] + 1] = input_ids[b, first : ends[0] + 1]
    return labels


def encode_batch(
    family: VLMFamily,
    processor: ProcessorMixin,
    panoramas: list[PanoramaInput],
    queries: list[str],
    answers: list[str] | None = None,
    system_prompt: str | None = None,
    max_length: int | None = None,
) -> EncodedBatch:
    """Render each sample with the chat template and run the processor on the whole batch (right padded).

    ``answers=None`` builds generation prompts (no labels, left padded). ``max_length`` truncates ids after processing
    (multimodal processors must not truncate: they would cut image placeholders).
    """
    if len(panoramas) != len(queries) or (answers is not None and len(answers) != len(queries)):
        raise ValueError(
            f"{len(panoramas)} panoramas, {len(queries)} queries, "
            f"{'no' if answers is None else len(answers)} answers: lengths must match"
        )
    texts = []
    for i, (pano, query) in enumerate(zip(panoramas, queries, strict=True)):
        if len(pano.images) > 1 and not family.multi_image:
            raise ValueError(
                f"{family.name} takes one image per turn; this input mode gives {len(pano.images)} "
                f"(use input_mode native or resize)"
            )
        messages = build_messages(len(pano.images), query, None if answers is None else answers[i], system_prompt)
        texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=answers is None))
    images = [pano.images for pano in panoramas]
    if not family.multi_image:
        images = [pano.images[0] for pano in panoramas]
    inputs = dict(
        processor(
            text=texts,
            images=images,
            padding=True,
            padding_side="right" if answers is not None else "left",
            return_tensors="pt",
        )
    )
    inputs.update(family.extra_inputs(processor, [image for pano in panoramas for image in pano.images]))
    if max_length is not None and inputs["input_ids"].shape[1] > max_length:
        for key in ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"):
            if key in inputs:
                inputs[key] = inputs[key][:, :max_length]
    if answers is not None:
        inputs["labels"] = assistant_labels(inputs["input_ids"], inputs["attention_mask"], family, processor)
    return EncodedBatch(inputs, [list(p.geometries) for p in panoramas], [len(p.images) for p in panoramas])
