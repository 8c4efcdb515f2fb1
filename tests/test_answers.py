"""Short-answer scoring: normalised exact match, box yaw across the seam, per-question scores and subsets."""

from __future__ import annotations

import pytest

from cora.evaluation.answers import (
    answer_accuracy,
    answer_metrics,
    box_yaw_deg,
    exact_match,
    normalise_answer,
    score_question,
    yaw_error_deg,
)


def _box(x1: float, x2: float) -> str:
    return f'{{"bbox_2d": [{x1}, 400, {x2}, 600]}}'


def test_normalise_and_exact_match() -> None:
    assert normalise_answer("  The Blue-Cone.  ") == "the blue cone"
    assert exact_match("The blue cone.", ["the blue cone"]) and not exact_match("two", ["three", "four"])
    assert not exact_match("anything", [])
    assert answer_accuracy([("The blue cone.", ["the blue cone"]), ("two", ["three"])]) == 0.5
    with pytest.raises(ValueError, match="no predictions"):
        answer_accuracy([])


@pytest.mark.parametrize(
    ("text", "yaw"),
    [
        (_box(450, 550), 0.0),  # the ERP's centre column
        (_box(0, 20), -176.4),
        (_box(750, 750), 90.0),
        (_box(990, 10), -180.0),  # wraps: centred on the seam
        (_box(900, 0), 162.0),  # wraps to the right edge exactly
        ('The box is {"bbox_2d": [250.5, 1, 249.5, 2]} there.', 90.0),  # wraps nearly all the way round
        ("the blue cone", None),
        ('{"bbox_2d": [1, 2, 3]}', None),
        (_box(-5, 20), None),
        (_box(10, 1200), None),
    ],
)
def test_box_yaw_deg(text: str, yaw: float | None) -> None:
    got = box_yaw_deg(text)
    assert got == pytest.approx(yaw) if yaw is not None else got is None


def test_yaw_error_across_the_seam() -> None:
    # reference centred on the seam (yaw 180°), prediction 3.6° to its right, across the seam
    assert yaw_error_deg(_box(0, 20), _box(990, 10)) == pytest.approx(3.6)
    assert yaw_error_deg(_box(990, 10), _box(0, 20)) == pytest.approx(3.6)
    assert yaw_error_deg(_box(450, 550), _box(990, 10)) == pytest.approx(180.0)
    assert yaw_error_deg(_box(0, 20), "the red cube") is None  # not a grounding reference
    assert yaw_error_deg("somewhere left", _box(990, 10)) is None  # unparsed, not an error value


def test_scores_and_subsets() -> None:
    scores = [
        score_question("a", "Describe the panorama.", "A room.", ["A room."]),  # caption: no exact match
        score_question("a", "What is behind you?", "nothing", ["nothing"], "behind", True),
        score_question("a", "How many?", "two", ["three"], "count", False),
        score_question("a", "How many cones?", "one", ["one"], "count_shape", False),
        score_question("a", "Locate the red cube.", _box(0, 20), [_box(990, 10)], "grounding", True),
        score_question("a", "Locate the blue cone.", "to the left", [_box(100, 200)], "grounding", False),
    ]
    assert scores[0].exact_match is None and scores[0].question_type is None and not scores[0].grounding
    assert scores[4].yaw_error_deg == pytest.approx(3.6) and scores[5].grounding and scores[5].yaw_error_deg is None
    result = answer_metrics(scores)
    assert result["exact_match"] == pytest.approx(2 / 5)
    assert result["by_type"]["count"] == {"n": 1, "exact_match": 0.0}
    assert result["by_type"]["count_shape"] == {"n": 1, "exact_match": 1.0}
    assert result["by_type"]["grounding"] == {"n": 2, "exact_match": 0.0}
    assert result["seam"] == {"n": 2, "exact_match": 0.5} and result["no_seam"] == {"n": 3, "exact_match": 1 / 3}
    assert result["yaw_error_deg"] == {"n": 2, "mean": pytest.approx(3.6), "unparsed": 1}
    assert scores[1].to_json() == {
        "url": "a",
        "query": "What is behind you?",
        "type": "behind",
        "seam": True,
        "prediction": "nothing",
        "exact_match": True,
        "yaw_error_deg": None,
    }


def test_blocks_nothing_could_fill_are_left_out() -> None:
    plain = [score_question("a", "describe", "a tree", ["a tree"]), score_question("b", "q", "x", ["y"])]
    assert answer_metrics(plain) == {"exact_match": 0.5}
    captions = [score_question("a", "Describe the panorama.", "A room.", ["A room."], "caption", True)]
    assert answer_metrics(captions) == {"exact_match": None, "by_type": {"caption": {"n": 1, "exact_match": None}}}
