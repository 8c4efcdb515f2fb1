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


def straddles_seam(obj: SynthObject) -> bool:
    """Whether the object's horizontal extent, ``yaw_deg ± half_width_deg``, contains the ±180° seam
    (so the ERP shows it cut in two, at its left and right edges)."""
    return abs(float(wrap_deg(obj.yaw_deg - 180.0))) <= obj.half_width_deg


def _arc_contains_seam(start_deg: float, end_deg: float) -> bool:
    """Whether turning right (yaw increasing) from ``start_deg`` to ``end_deg`` passes ±180°."""
    length = (end_deg - start_deg) % 360.0
    return (180.0 - start_deg) % 360.0 <= length


def _turn_contains_seam(start_deg: float, end_deg: float, side: str) -> bool:
    """The arc turning ``side`` ("left" or "right") from ``start_deg`` to ``end_deg``."""
    return _arc_contains_seam(start_deg, end_deg) if side == "right" else _arc_contains_seam(end_deg, start_deg)


def _named(scene: Scene, text: str) -> list[SynthObject]:
    """The scene's objects whose name ("red sphere") occurs in ``text``, in scene order."""
    return [o for o in scene.objects if re.search(rf"\b{re.escape(o.name)}\b", text)]


def _of_colour(scene: Scene, colour: str) -> SynthObject | None:
    return next((o for o in scene.objects if o.colour == colour.strip().lower()), None)


def _involved(scene: Scene, kind: str, query: str, answer: str) -> list[SynthObject]:
    """The objects a question names, answers or counts."""
    if kind in ("count", "caption"):
        return list(scene.objects)
    if kind == "count_shape":
        shape = re.fullmatch(r"How many (\w+)s are there\?", query)
        return [o for o in scene.objects if shape and o.shape == shape.group(1)]
    objects = _named(scene, query) + _named(scene, answer)
    if kind == "opposite":
        opp = _of_colour(scene, answer)
        objects += [opp] if opp else []
    return objects


def _arc_needs_seam(scene: Scene, kind: str, query: str, answer: str) -> bool:
    """Whether the arc of yaw the question is about, or turns through, contains ±180°."""
    if kind == "behind":
        return True
    if kind == "direction":
        sector = DIRECTIONS.index(query.removeprefix("What is ").removesuffix("?"))
        return _arc_contains_seam(45.0 * sector - 22.5, 45.0 * sector + 22.5)
    named = _named(scene, query)
    if kind == "next_to":
        target = _named(scene, answer)
        side = "left" if query.startswith("What is to the left") else "right"
        return bool(named and target) and _turn_contains_seam(named[0].yaw_deg, target[0].yaw_deg, side)
    if kind == "opposite":
        opp = _of_colour(scene, answer)
        if not (named and opp):
            return False
        # the shorter way round from the object to its opposite
        side = "right" if float(wrap_deg(opp.yaw_deg - named[0].yaw_deg)) >= 0 else "left"
        return _turn_contains_seam(named[0].yaw_deg, opp.yaw_deg, side)
    return False


def needs_seam(scene: Scene, query: str, answer: str) -> bool:
    """Whether answering ``query`` about ``scene`` (with ``answer``) needs the ±180° seam.

    A question needs the seam when it names or answers an object that straddles the seam
    (:func:`straddles_seam`), or when the arc of yaw it is about or turns through contains ±180°:

    - "What is behind you?": its sector is centred on the seam, always;
    - "What is {direction}?": the sector's 45° arc;
    - "What is to the left/right of X?": the arc from X turning that way to the answer;
    - "Which colour is opposite X?": the shorter arc from X to the answer object (the one of that
      colour), when there is one ("none" has no arc);
    - "How many objects ...?": any object straddles; "How many {shape}s ...?": any object of that shape;
    - the caption: any object straddles (it names them all);
    - "Where is X?", "Which object is nearest/farthest?" and unknown questions: only the objects
      they name or answer.

    A pure function of the scene and the text: objects are found by their names in the query and
    answer (unique within a scene), the question by :func:`question_type`.
    """
    kind = question_type(query)
    if any(straddles_seam(o) for o in _involved(scene, kind, query, answer)):
        return True
    return _arc_needs_seam(scene, kind, query, answer)
