"""The LLM-judge reward: an OpenAI-compatible endpoint grades the answer 0-10 against the references.

It is evaluation's :class:`~cora.evaluation.judge.Judge` (retries, on-disk cache of every answer), so
a repeated (question, answer) costs no request. A reply that holds no grade scores 0 and is logged.
"""

from __future__ import annotations

import logging

from cora.rewards.base import Completion, RewardFn, RewardSettings

logger = logging.getLogger(__name__)


class JudgeReward:
    def __init__(self, judge) -> None:
        self.judge = judge

    def __call__(self, completion: Completion) -> float:
        grade, raw = self.judge.grade(completion.query, completion.text, completion.references)
        if grade is None:
            logger.warning("judge reward: no grade in the judge's answer %r; scored 0", raw[:200])
            return 0.0
        return grade / 10.0


def judge_reward(settings: RewardSettings) -> RewardFn:
    from cora.evaluation.judge import build_judge

    if settings.judge is None:
        raise ValueError("the 'judge' reward needs rl.judge (an OpenAI-compatible endpoint: url, model)")
    return JudgeReward(build_judge(settings.judge, default_cache_dir=settings.cache_dir))
