"""compute_metrics against pycocoevalcap called directly; unavailable metrics are null with a reason."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from cora.evaluation.metrics import compute_metrics, format_metrics, spice_missing
from cora.evaluation.predictions import PredictionGroup, read_predictions

pytest.importorskip("pycocoevalcap")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")

SAMPLES = [
    (
        "p/1.jpg",
        "Describe the panorama.",
        "A wide lake with rocks in front, and pine trees behind.",
        [
            "A calm lake surrounded by pine trees, with rocks in the foreground.",
            "Rocks by a lake; a forest behind it.",
            "A mountain lake under a clear sky.",
        ],
    ),
    (
        "p/2.jpg",
        "Describe the panorama.",
        "A red cube on a grey floor.",
        ["A red box stands on a grey floor.", "There is a red cube in an empty room."],
    ),
    ("p/2.jpg", "What colour is the cube?", "red", ["Red.", "It is red."]),
    (
        "p/3.jpg",
        "Describe the panorama.",
        "Two people walk along a beach at sunset!",
        ["People walking on the beach at dusk.", "A sandy beach with two walkers, the sun low."],
    ),
    ("p/4.jpg", "Is there a car?", "No, there is no car.", ["No."]),
]


def _write_interleaved(path) -> None:
    """One row per reference, rows of different samples interleaved (grouping must not care)."""
    rows = [(u, q, p, r) for u, q, p, refs in SAMPLES for r in refs]
    rows = rows[::2] + rows[1::2]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "query", "prediction", "annotation"])
        writer.writerows(rows)


@pytest.mark.slow
@needs_java
def test_metrics_agree_exactly_with_pycocoevalcap(tmp_path):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    csv_path = tmp_path / "predictions.csv"
    _write_interleaved(csv_path)
    ours = compute_metrics(csv_path)

    # the COCO caption evaluation, by hand, on the same data
    gts = {f"img{i}": [{"caption": r} for r in refs] for i, (_, _, _, refs) in enumerate(SAMPLES)}
    res = {f"img{i}": [{"caption": p}] for i, (_, _, p, _) in enumerate(SAMPLES)}
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts), tok.tokenize(res)
    expected = {
        "bleu4": Bleu(4).compute_score(gts, res, verbose=0)[0][3],
        "meteor": Meteor().compute_score(gts, res)[0],
        "rouge_l": Rouge().compute_score(gts, res)[0],
        "cider": Cider().compute_score(gts, res)[0],
    }
    for key, value in expected.items():
        assert ours[key] == value, key
    assert 0.0 < ours["bleu4"] < 1.0 and ours["cider"] > 0.0
    assert ours["n_samples"] == 5 and ours["n_references"] == 10
    reason = spice_missing()
    if reason:  # SPICE's CoreNLP jars are not shipped: null with the reason, never 0
        assert ours["spice"] is None
        assert "CoreNLP" in ours["unavailable"]["spice"]
    json.dumps(ours, allow_nan=False)  # metrics.json must be valid JSON
    table = format_metrics(ours)
    assert "METEOR" in table and "CIDEr" in table


@needs_java
def test_identical_predictions_score_high_and_samples_without_references_are_counted(tmp_path):
    groups = [
        PredictionGroup(f"u{i}", "q", f"a small {c} house near the {w}", (f"a small {c} house near the {w}",))
        for i, (c, w) in enumerate([("red", "river"), ("blue", "sea"), ("green", "road"), ("white", "hill")])
    ]
    groups.append(PredictionGroup("u9", "q", "anything", ()))
    result = compute_metrics(groups, metrics=["bleu4", "rouge_l", "cider"])
    assert result["bleu4"] == pytest.approx(1.0)
    assert result["rouge_l"] == pytest.approx(1.0)
    assert result["n_samples"] == 4 and result["n_without_references"] == 1
    assert "meteor" not in result


def test_nothing_to_score_is_null_with_reason():
    result = compute_metrics([PredictionGroup("u", "q", "p", ())], metrics=["bleu4", "cider"])
    assert result["bleu4"] is None and result["cider"] is None
    assert result["unavailable"] == {
        "bleu4": "no sample has a reference annotation",
        "cider": "no sample has a reference annotation",
    }


def test_missing_java_is_reported_not_zero(monkeypatch):
    monkeypatch.setattr("cora.evaluation.metrics.shutil.which", lambda name: None)
    result = compute_metrics([PredictionGroup("u", "q", "p", ("r",))], metrics=["bleu4", "meteor"])
    assert result["bleu4"] is None and result["meteor"] is None
    assert "java not found" in result["unavailable"]["meteor"]


def test_unknown_metric_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['bleu'\]; valid: \['bleu4', 'cider'"):
        compute_metrics([], metrics=["bleu"])


def test_read_predictions_groups_and_errors(tmp_path):
    path = tmp_path / "p.csv"
    _write_interleaved(path)
    groups = read_predictions(path)
    assert [(g.url, g.query) for g in groups] == [(u, q) for u, q, _, _ in SAMPLES]
    assert [sorted(g.references) for g in groups] == [sorted(refs) for _, _, _, refs in SAMPLES]

    bad = tmp_path / "bad.csv"
    bad.write_text("url,query,prediction,annotation\na,q,one,r1\na,q,two,r2\n")
    with pytest.raises(ValueError, match=r"bad.csv: row 3: field 'prediction' differs"):
        read_predictions(bad)
    bad.write_text("url,query,annotation\na,q,r1\n")
    with pytest.raises(ValueError, match=r"bad.csv: missing column\(s\) \['prediction'\]"):
        read_predictions(bad)
