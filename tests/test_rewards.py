"""Rewards on known cases: exact match, numbers, sets, yaw across the seam, format, the judge, the per-type mix."""

from __future__ import annotations

import pytest

from cora.config.sections.training import StageConfig
from cora.registry import REWARDS
from cora.rewards import Completion, RewardSettings, build_reward
from cora.rewards.verifiable import answer_items, parse_number
from tests.stub_openai import StubChatServer


def reward(name: str, text: str, *refs: str, **kw) -> float:
    return REWARDS.load(name)(RewardSettings())(Completion(text, refs, **kw))


def test_exact_match_after_normalisation():
    assert reward("exact_match", "The Orange cube.", "the orange cube") == 1.0
    assert reward("exact_match", "the orange cone", "the orange cube", "nothing") == 0.0
    assert reward("exact_match", "Nothing!", "the orange cube", "nothing") == 1.0


def test_numeric_reads_words_and_digits_and_gives_partial_credit():
    assert parse_number("There are five.") == 5.0 and parse_number("12 objects") == 12.0
    assert parse_number("seventeen") == 17.0 and parse_number("-3.5 degrees") == -3.5
    assert parse_number("none") is None
    assert reward("numeric", "5", "five") == 1.0
    assert reward("numeric", "three", "four") == pytest.approx(0.75)
    assert reward("numeric", "eight", "four") == 0.0
    assert reward("numeric", "many", "four") == 0.0


def test_set_f1_ignores_order_articles_and_separators():
    assert answer_items("the red cube, a blue sphere and the green cone") == {"red cube", "blue sphere", "green cone"}
    assert reward("set_f1", "the blue sphere and the red cube", "the red cube, the blue sphere") == 1.0
    # 1 of 2 predicted is right, 1 of 3 wanted found: P 1/2, R 1/3, F1 0.4.
    assert reward("set_f1", "red cube and yellow cone", "red cube, blue sphere, green cone") == pytest.approx(0.4)
    assert reward("set_f1", "purple cone", "red cube") == 0.0


def test_yaw_reward_goes_the_short_way_round_the_seam():
    # The reference box wraps the seam (x1 > x2): centre at x = 0 = yaw -180°. A box centred at x = 10
    # (yaw -176.4°) is 3.6° away, not 356.4°.
    ref = '{"bbox_2d": [980, 400, 20, 600]}'
    assert reward("yaw", '{"bbox_2d": [0, 400, 20, 600]}', ref) == pytest.approx(1 - 3.6 / 180)
    assert reward("yaw", '{"bbox_2d": [990, 400, 10, 600]}', ref) == pytest.approx(1.0)
    assert reward("yaw", '{"bbox_2d": [490, 400, 510, 600]}', ref) == pytest.approx(0.0)  # opposite
    assert reward("yaw", "behind you", ref) == 0.0  # no box: unparsed


def test_format_wants_a_finished_nonempty_answer_and_a_box_where_the_reference_is_one():
    assert reward("format", "the red cube", "nothing") == 1.0
    assert reward("format", "the red cube", "nothing", finished=False) == 0.0
    assert reward("format", " . ", "nothing") == 0.0
    assert reward("format", "left", '{"bbox_2d": [1, 2, 3, 4]}') == 0.0
    assert reward("format", '{"bbox_2d": [1, 2, 3, 4]}', '{"bbox_2d": [5, 6, 7, 8]}') == 1.0


def test_the_reward_of_a_question_type_is_the_mean_of_its_rewards():
    mixed = build_reward({"count": ["numeric", "format"]}, ["exact_match"])
    assert mixed(Completion("three", ("four",), question_type="count")) == pytest.approx((0.75 + 1.0) / 2)
    assert mixed(Completion("three", ("four",), question_type="where")) == 0.0  # default: exact match
    assert mixed(Completion("four", ("four",))) == 1.0


class Grader(StubChatServer):
    requests = 0

    def respond(self, path, body, headers):
        self.requests += 1
        return self.chat_reply('{"score": 7, "reason": "close"}')


def test_judge_reward_grades_through_the_endpoint_and_caches(tmp_path):
    with Grader() as stub:
        judge = {"url": stub.url, "model": "stub", "max_retries": 0, "cache_dir": str(tmp_path)}
        stage = StageConfig(kind="rl", language_model="lora", rl={"default_rewards": ["judge"], "judge": judge})
        fn = build_reward({}, stage.rl.default_rewards, RewardSettings(stage.rl.judge))
        done = Completion("a red cube", ("the red cube",), query="What is ahead?")
        assert fn(done) == pytest.approx(0.7)
        assert fn(done) == pytest.approx(0.7)
        assert stub.requests == 1  # the second grade came from the cache


def test_rewards_are_config_checked_by_name():
    with pytest.raises(ValueError, match="did you mean 'numeric'"):
        StageConfig(kind="rl", rl={"rewards": {"count": ["numerc"]}})
    with pytest.raises(ValueError, match="needs rl.judge"):
        StageConfig(kind="rl", rl={"default_rewards": ["judge"]})
    with pytest.raises(ValueError, match="overlap_loss_weight 0"):
        StageConfig(kind="rl", overlap_loss_weight=1.0)
