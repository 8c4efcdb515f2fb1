"""Fail-fast checks on the first batch: wrong templates and processors fail here, not after an epoch."""

from __future__ import annotations

from transformers import PreTrainedModel, ProcessorMixin

from cora.adapt.encode import IGNORE, EncodedBatch
from cora.adapt.families.base import VLMFamily, token_runs


class HealthCheckError(ValueError):
    """The batch does not match what the model will do with it."""


def check_batch(family: VLMFamily, processor: ProcessorMixin, model: PreTrainedModel, batch: EncodedBatch) -> None:
    """Raise :class:`HealthCheckError` naming the sample and what is wrong.

    1. each sample has one expanded image-token run per attached image;
    2. each run is as long as that image's grid expands to (grid size / merge, patches × tokens, …);
    3. image tokens and the prompt carry no labels (when labels are present);
    4. the labelled span is non-empty and ends with the end-of-turn token.
    """
    inputs = batch.inputs
    ids = inputs["input_ids"]
    image_id = family.image_token_id(processor)
    expected = family.image_token_counts(inputs, model)
    cursor = 0
    for b, n_images in enumerate(batch.num_images):
        runs = token_runs(ids[b], image_id)
        if len(runs) != n_images:
            raise HealthCheckError(
                f"sample {b}: {len(runs)} image placeholder run(s) in input_ids for {n_images} "
                f"attached image(s); the chat template must write one placeholder per image"
            )
        for k, (start, end) in enumerate(runs):
            if cursor >= len(expected):
                raise HealthCheckError(
                    f"sample {b}, image {k}: more placeholder runs than processed images ({len(expected)})"
                )
            if end - start != expected[cursor]:
                raise HealthCheckError(
                    f"sample {b}, image {k}: {end - start} image tokens but its grid expands to "
                    f"{expected[cursor]} vision tokens"
                )
            cursor += 1
    if cursor != len(expected):
        raise HealthCheckError(f"the batch has {len(expected)} processed images but {cursor} placeholder runs")
    labels = inputs.get("labels")
    if labels is None:
        return
    eot = processor.tokenizer.convert_tokens_to_ids(family.end_of_turn)
    for b in range(ids.shape[0]):
        labelled = (labels[b] != IGNORE).nonzero().flatten()
        if len(labelled) == 0:
            raise HealthCheckError(
                f"sample {b}: no labelled tokens (assistant header {family.assistant_header!r} "
                f"or end-of-turn {family.end_of_turn!r} not found, or truncated away)"
            )
        if bool((labels[b][ids[b] == image_id] != IGNORE).any()):
            raise HealthCheckError(f"sample {b}: image tokens carry labels; they must be -100")
        first, last = int(labelled[0]), int(labelled[-1])
        if int((labels[b, first : last + 1] == IGNORE).sum()):
            raise HealthCheckError(f"sample {b}: the labelled span {first}..{last} has holes")
        header = processor.tokenizer(family.assistant_header, add_special_tokens=False)["input_ids"]
        if ids[b, first - len(header) : first].tolist() != header:
            raise HealthCheckError(
                f"sample {b}: labels start at token {first}, not right after the assistant "
                f"header {family.assistant_header!r}: the prompt must be masked"
            )
        if int(ids[b, last]) != eot:
            raise HealthCheckError(
                f"sample {b}: the labelled span ends with token {int(ids[b, last])}, not the "
                f"end-of-turn {family.end_of_turn!r} ({eot})"
            )
