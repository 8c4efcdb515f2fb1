"""Feedback files as training data: rows checked and counted, corrections for SFT, ratings for rl, replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cora.config import load_config
from cora.config.sections.training import StageConfig
from cora.data.datamodule import feedback_with_replay
from cora.data.feedback import FEEDBACK_TYPE, read_feedback
from cora.data.readers import read_records
from cora.data.records import BadRowLog, DataError
from cora.rewards import Completion, build_reward
from cora.training.runner import train

ROOT = Path(__file__).resolve().parents[1]


def write_feedback(path: Path, image: str) -> Path:
    rows = [
        {
            "image": image,
            "query": "What is behind you?",
            "answer": "the red cube",
            "rating": -1,
            "correction": "nothing",
        },
        {"image": image, "query": "How many objects are there?", "answer": "three", "rating": 1},
        {"image": image, "query": "Where is the red cube?", "answer": "ahead", "rating": -1},
        {"image": image, "query": "What is ahead?", "answer": "the red cube", "rating": 2},
        {"image": image, "query": "What is ahead?", "answer": "the red cube"},
        {"image": "missing.png", "query": "What is ahead?", "answer": "x", "rating": 1},
        {"image": image, "query": "", "answer": "x", "rating": 1},
    ]
    lines = [json.dumps(r) for r in rows] + ["{not json", "[1, 2]"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_feedback_rows_are_named_and_counted(tmp_path, synth):
    fb = write_feedback(tmp_path / "feedback.jsonl", str(synth / "images" / "00000.png"))
    with pytest.raises(DataError, match=r"feedback.jsonl:4: field 'rating': expected -1 or \+1, got 2"):
        read_feedback(fb, "rl", BadRowLog("error"))
    log = BadRowLog("skip")
    records = read_feedback(fb, "rl", log)
    assert len(records) == 3 and {r.question_type for r in records} == {FEEDBACK_TYPE}
    reasons = [str(r) for r in log.rows]
    assert len(reasons) == 6
    assert reasons[0].endswith("feedback.jsonl:4: field 'rating': expected -1 or +1, got 2")
    assert "feedback.jsonl:5: neither 'rating' nor 'correction'" in reasons[1]
    assert "feedback.jsonl:6: field 'image': image not found" in reasons[2]
    assert "feedback.jsonl:7: field 'query'" in reasons[3]
    assert "feedback.jsonl:8: not JSON" in reasons[4] and "feedback.jsonl:9: expected a JSON object" in reasons[5]
    # SFT keeps only the corrected row, as (query, correction).
    sft = read_feedback(fb, "sft", BadRowLog("skip"))
    assert [(r.query, r.answer) for r in sft] == [("What is behind you?", "nothing")]


def test_the_feedback_reward_follows_the_ratings(tmp_path, synth):
    fb = write_feedback(tmp_path / "feedback.jsonl", str(synth / "images" / "00000.png"))
    corrected, liked, disliked = read_feedback(fb, "rl", BadRowLog("skip"))
    reward = build_reward(StageConfig(kind="rl").rl.rewards, ["exact_match"])

    def score(record, text):
        return reward(Completion(text, (record.answer,), question_type=record.question_type, rejected=record.rejected))

    assert score(corrected, "nothing") == 1.0 and score(corrected, "the red cube") == 0.0
    assert score(liked, "three") == 1.0 and score(liked, "four") == 0.0
    # Only a wrong answer is known: it scores 0, any other answer 0.5.
    assert score(disliked, "ahead") == 0.0 and score(disliked, "behind you") == 0.5


def test_replay_mixes_in_the_configured_share_of_training_rows(tmp_path, synth):
    fb = write_feedback(tmp_path / "feedback.jsonl", str(synth / "images" / "00000.png"))
    original, _ = read_records(synth / "train.csv")
    stage = StageConfig(kind="rl", feedback=str(fb), replay=0.5)
    rows = feedback_with_replay(stage, 0, original, BadRowLog("skip"))
    assert len(rows) == 6 and sum(r.question_type == FEEDBACK_TYPE for r in rows) == 3
    assert rows == feedback_with_replay(stage, 0, original, BadRowLog("skip"))  # deterministic in the seed


@pytest.mark.slow
def test_a_feedback_stage_reports_held_out_metrics_before_and_after(tmp_path, synth, kit_paths):
    fb = write_feedback(tmp_path / "feedback.jsonl", str(synth / "images" / "00000.png"))
    cfg = tmp_path / "fb.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n"
        f"experiment: {{name: fb, output_dir: {tmp_path / 'runs'}}}\n"
        f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
        f"data: {{train: {synth / 'train.csv'}, val: {synth / 'val.csv'}, view_cache: 0, bad_row_policy: skip}}\n"
        "training:\n  stages: [finetune, corrections, ratings]\n  progress_bar: false\n  loggers: [csv]\n"
        "  stage_configs:\n"
        "    finetune: {max_steps: 2, batch_size: 2}\n"
        f"    corrections: {{language_model: lora, feedback: {fb}, replay: 0.5, max_steps: 2, batch_size: 2}}\n"
        f"    ratings: {{kind: rl, language_model: lora, resampler: frozen, feedback: {fb}, replay: 0.25,\n"
        "              max_steps: 2, batch_size: 2, rl: {group_size: 2, max_new_tokens: 4}}\n"
    )
    result = train(load_config(cfg))
    for stage in ("corrections", "ratings"):
        summary = result.summaries[stage]
        assert set(summary["val_before"]) >= {"val_loss"} and set(summary["val"]) >= {"val_loss"}
        assert summary["val_before"]["val_loss"] != summary["val"]["val_loss"]
    assert "val_before" not in result.summaries["finetune"]
