"""Captions and question/answer pairs of a SynthPano scene, from templates.

The answer vocabulary is small and regular on purpose ("the blue cone", "red", "two",
"behind you to the left", "nothing") so that a tiny language model can learn it in the
CPU demo. Every question needs the whole 360° view: what is behind, what comes next
turning left, what is opposite, how many, which is nearest.
"""

from __future__ import annotations

import re

import numpy as np

from cora.data.records import CAPTION_QUERY
from cora.data.synth.scene import COLOURS, DIRECTIONS, SHAPES, Scene, SynthObject
from cora.processors.geometry import wrap_deg

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
OPPOSITE_TOLERANCE_DEG = 45.0


def _plural(shape: str) -> str:
    return shape + "s"


def _the(obj: SynthObject) -> str:
    return f"the {obj.name}"


def caption(scene: Scene) -> str:
    """ "A panorama with three objects: a large red sphere ahead, … The nearest is the red sphere."""
    parts = [f"a {o.size} {o.name} {o.direction}" for o in scene.ordered()]
    count = len(scene.objects)
    noun = "object" if count == 1 else "objects"
    return (
        f"A panorama with {NUMBERS[count]} {noun}: "
        + ", ".join(parts)
        + f". The nearest is {_the(scene.by_distance()[0])}."
    )


def objects_in(scene: Scene, direction: str) -> list[SynthObject]:
    return [o for o in scene.ordered() if o.direction == direction]


def _list_answer(objects: list[SynthObject]) -> str:
    if not objects:
        return "nothing"
    names = [_the(o) for o in objects]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def next_turning(scene: Scene, obj: SynthObject, side: str) -> SynthObject:
    """The next object met turning ``side`` ("left" or "right") from ``obj``, wrapping round."""
    sign = -1.0 if side == "left" else 1.0
    others = [o for o in scene.objects if o is not obj]
    return min(others, key=lambda o: (sign * (o.yaw_deg - obj.yaw_deg)) % 360.0)


def opposite(scene: Scene, obj: SynthObject) -> SynthObject | None:
    """The object nearest the direction opposite ``obj`` (within 45°), or None."""
    target = obj.yaw_deg + 180.0
    others = [o for o in scene.objects if o is not obj]
    if not others:
        return None
    best = min(others, key=lambda o: abs(float(wrap_deg(o.yaw_deg - target))))
    return best if abs(float(wrap_deg(best.yaw_deg - target))) <= OPPOSITE_TOLERANCE_DEG else None


_NAME = r"(?:" + "|".join(COLOURS) + r") (?:" + "|".join(SHAPES) + r")"
# The question templates of :func:`qa_pairs`, by type (the demo reports held-out results per type).
QUESTION_TYPES: dict[str, re.Pattern[str]] = {
    "behind": re.compile(r"What is behind you\?"),
    "count": re.compile(r"How many objects are there\?"),
    "nearest": re.compile(r"Which object is nearest\?"),
    "farthest": re.compile(r"Which object is farthest\?"),
    "where": re.compile(rf"Where is the {_NAME}\?"),
    "direction": re.compile(r"What is (?:" + "|".join(DIRECTIONS) + r")\?"),
    "count_shape": re.compile(r"How many (?:" + "|".join(SHAPES) + r")s are there\?"),
    "next_to": re.compile(rf"What is to the (?:left|right) of the {_NAME}\?"),
    "opposite": re.compile(rf"Which colour is opposite the {_NAME}\?"),
}


def question_type(query: str) -> str:
    """The template a SynthPano question comes from (a key of ``QUESTION_TYPES``), ``"caption"`` for
    the caption request, ``"other"`` for anything else."""
    if query == CAPTION_QUERY:
        return "caption"
    return next((name for name, pattern in QUESTION_TYPES.items() if pattern.fullmatch(query)), "other")


def qa_pairs(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Question/answer pairs about the scene (one per question type, random targets)."""
    objs = scene.ordered()
    pick = objs[int(rng.integers(len(objs)))]
    qa = [
        ("What is behind you?", _list_answer(objects_in(scene, "behind you"))),
        ("How many objects are there?", NUMBERS[len(objs)]),
        ("Which object is nearest?", _the(scene.by_distance()[0])),
        ("Which object is farthest?", _the(scene.by_distance()[-1])),
        (f"Where is the {pick.name}?", pick.direction),
    ]
    direction = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
    if direction != "behind you":
        qa.append((f"What is {direction}?", _list_answer(objects_in(scene, direction))))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    qa.append((f"How many {_plural(shape)} are there?", NUMBERS[sum(o.shape == shape for o in objs)]))
    if len(objs) >= 2:
        side = "left" if rng.random() < 0.5 else "right"
        target = objs[int(rng.integers(len(objs)))]
        qa.append((f"What is to the {side} of the {target.name}?", _the(next_turning(scene, target, side))))
        target = objs[int(rng.integers(len(objs)))]
        opp = opposite(scene, target)
        qa.append((f"Which colour is opposite the {target.name}?", opp.colour if opp else "none"))
    return qa
