"""What a reward sees (:class:`Completion`), what it is (:class:`RewardFn`), and the per-type mix.

A reward factory, registered in :data:`cora.registry.REWARDS`, takes the stage's
:class:`RewardSettings` and returns a :class:`RewardFn`. Most rewards need nothing from the
settings; the LLM judge takes its endpoint from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cora.registry import REWARDS


@dataclass(frozen=True)
class Completion:
    """One sampled answer and what it is judged against."""

    text: str
    references: tuple[str, ...]
    query: str = ""
    question_type: str | None = None
    seam: bool | None = None
    #: the answer ended with the end-of-sequence token (False: cut at max_new_tokens)
    finished: bool = True
    #: answers known to be wrong (feedback rated -1)
    rejected: tuple[str, ...] = ()


class RewardFn(Protocol):
    def __call__(self, completion: Completion) -> float:
        """A score in [0, 1]."""


@dataclass(frozen=True)
class RewardSettings:
    """Everything a reward factory may need: the judge endpoint (a ``JudgeConfig``) and its cache."""

    judge: Any = None
    cache_dir: str | None = None


@dataclass(frozen=True)
class MixedReward:
    """The mean of the rewards listed for a completion's question type (``default`` for other types)."""

    by_type: Mapping[str, Sequence[RewardFn]]
    default: Sequence[RewardFn]
    names: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __call__(self, completion: Completion) -> float:
        fns = self.by_type.get(completion.question_type or "", self.default)
        return sum(fn(completion) for fn in fns) / len(fns)


def build_reward(
    by_type: Mapping[str, Sequence[str]], default: Sequence[str], settings: RewardSettings | None = None
) -> MixedReward:
    """The stage's reward: ``by_type`` maps a question type to reward names, ``default`` covers the rest."""
    settings = settings or RewardSettings()
    built: dict[str, RewardFn] = {}

    def load(names: Sequence[str]) -> list[RewardFn]:
        if not names:
            raise ValueError("a question type needs at least one reward")
        for name in names:
            if name not in built:
                built[name] = REWARDS.load(name)(settings)
        return [built[name] for name in names]

    return MixedReward(
        {kind: load(names) for kind, names in by_type.items()},
        load(default),
        {**{k: list(v) for k, v in by_type.items()}, "default": list(default)},
    )
