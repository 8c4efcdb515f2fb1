"""A deterministic English corpus about panoramic scenes, for the kit's tokenizer.

The tokenizer only needs to have seen the words the demo talks about (colours, shapes,
directions, counts) so that they become short token sequences; callers may add their
own texts (e.g. the SynthPano captions) on top.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black", "grey", "pink", "brown", "cyan"]
SHAPES = ["sphere", "cube", "box", "cylinder", "cone", "pyramid", "ball", "tower", "pillar", "rock", "tree", "house"]
SIZES = ["small", "large", "tiny", "huge", "medium", "tall", "short", "wide"]
PLACES = [
    "ahead",
    "behind you",
    "to the left",
    "to the right",
    "in front",
    "far away",
    "nearby",
    "behind you to the left",
    "behind you to the right",
    "ahead to the left",
    "ahead to the right",
    "above the horizon",
    "below the horizon",
    "across the seam",
    "on the ground",
    "in the sky",
]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
QUESTIONS = [
    "What is behind you?",
    "What is to the left of the {c} {s}?",
    "How many objects are there?",
    "Which colour is opposite the {c} {s}?",
    "Which object is nearest?",
    "Describe the panorama.",
    "What do you see in this 360 degree image?",
    "Is there a {c} {s} in the scene?",
    "Where is the {s}?",
]
SCENES = [
    "a sunny meadow",
    "an empty plain",
    "a grey courtyard",
    "a lake shore",
    "a desert",
    "a city square",
    "a forest clearing",
    "a beach",
    "a room",
    "a field at dusk",
]


def scene_corpus(n: int = 4000, seed: int = 0) -> Iterator[str]:
    """``n`` short captions, questions and answers built from the vocabulary above."""
    rng = random.Random(seed)
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(f"a {rng.choice(SIZES)} {rng.choice(COLOURS)} {rng.choice(SHAPES)} {rng.choice(PLACES)}")
        yield f"A 360 degree panorama of {rng.choice(SCENES)} with " + ", ".join(parts) + "."
        question = rng.choice(QUESTIONS).format(c=rng.choice(COLOURS), s=rng.choice(SHAPES))
        yield question
        yield (
            f"There are {rng.choice(NUMBERS)} objects. The nearest is the {rng.choice(COLOURS)} "
            f"{rng.choice(SHAPES)}, {rng.choice(PLACES)}. Yes. No."
        )
