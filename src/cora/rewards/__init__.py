"""Rewards for the ``rl`` stage: functions that score one sampled answer in [0, 1].

Each reward is registered by name in :data:`cora.registry.REWARDS` (one line per reward); a stage
config picks the rewards per question type (``rl.rewards``), see :func:`build_reward`.
"""

from cora.rewards.base import Completion, RewardFn, RewardSettings, build_reward

__all__ = ["Completion", "RewardFn", "RewardSettings", "build_reward"]
