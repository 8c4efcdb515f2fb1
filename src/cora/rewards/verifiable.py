"""Rewards checked against the reference answers: exact match, numbers, sets of objects, yaw, format.

Each ``*_reward(settings)`` is a factory registered in :data:`cora.registry.REWARDS`; the function it
returns scores one :class:`~cora.rewards.base.Completion` in [0, 1] against its best reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cora.evaluation.answers import box_yaw_deg, exact_match, normalise_answer, yaw_error_deg
from cora.rewards.base import Completion, RewardFn, RewardSettings

NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_ARTICLES = {"a", "an", "the"}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?|\b(?:" + "|".join(NUMBER_WORDS) + r")\b")
_SPLIT = re.compile(r"\s*(?:,|;|\band\b|&)\s*")


def parse_number(text: str) -> float | None:
    """The first number in ``text``, as digits (``12``, ``-3.5``) or a word up to twenty; else None."""
    match = _NUMBER.search(text.lower())
    if match is None:
        return None
    token = match.group(0)
    return float(NUMBER_WORDS[token]) if token in NUMBER_WORDS else float(token)


def answer_items(text: str) -> frozenset[str]:
    """A list answer as a set: split at commas, semicolons and "and"; normalised, articles dropped."""
    items = set()
    for part in _SPLIT.split(text.lower()):
        words = [w for w in normalise_answer(part).split() if w not in _ARTICLES]
        if words:
            items.add(" ".join(words))
    return frozenset(items)


def set_f1(prediction: str, reference: str) -> float:
    """F1 between the predicted and the reference set of items (1.0 when both are empty)."""
    pred, ref = answer_items(prediction), answer_items(reference)
    if not pred and not ref:
        return 1.0
    hits = len(pred & ref)
    if not hits:
        return 0.0
    precision, recall = hits / len(pred), hits / len(ref)
    return 2 * precision * recall / (precision + recall)


def _exact(completion: Completion) -> float:
    return float(exact_match(completion.text, completion.references))


def _numeric(completion: Completion) -> float:
    # Partial credit falls off with the relative error: 3 for 4 scores 0.75, 8 for 4 scores 0.
    got = parse_number(completion.text)
    best = 0.0
    for ref in completion.references:
        want = parse_number(ref)
        if got is None or want is None:
            continue
        best = max(best, max(0.0, 1.0 - abs(got - want) / max(abs(want), 1.0)))
    return best


def _set_f1(completion: Completion) -> float:
    return max((set_f1(completion.text, ref) for ref in completion.references), default=0.0)


def _yaw(completion: Completion) -> float:
    # Seam-aware (yaw_error_deg goes the short way round): 1 at the right yaw, 0 when opposite or unparsed.
    errors = [e for e in (yaw_error_deg(completion.text, ref) for ref in completion.references) if e is not None]
    return 1.0 - min(errors) / 180.0 if errors else 0.0


def _format(completion: Completion) -> float:
    """1 for an answer that ended on its own, is not empty and, where a reference is a box, holds a box."""
    if not completion.finished or not normalise_answer(completion.text):
        return 0.0
    wants_box = any(box_yaw_deg(ref) is not None for ref in completion.references)
    return float(not wants_box or box_yaw_deg(completion.text) is not None)


def _feedback(completion: Completion) -> float:
    """1 for a corrected or +1-rated answer, 0 for a -1-rated one or another answer where a good one is
    known, 0.5 for an answer that differs from the only (rejected) one known."""
    if exact_match(completion.text, completion.rejected):
        return 0.0
    good = [r for r in completion.references if r not in completion.rejected]
    if good:
        return float(exact_match(completion.text, good))
    return 0.5


def _needs_no_settings(fn: RewardFn) -> Callable[[RewardSettings], RewardFn]:
    """The registry's factory for a reward that reads nothing from the stage's settings."""

    def factory(settings: RewardSettings) -> RewardFn:
        return fn

    return factory


exact_match_reward = _needs_no_settings(_exact)
numeric_reward = _needs_no_settings(_numeric)
set_f1_reward = _needs_no_settings(_set_f1)
yaw_reward = _needs_no_settings(_yaw)
format_reward = _needs_no_settings(_format)
feedback_reward = _needs_no_settings(_feedback)
