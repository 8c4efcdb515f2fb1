"""Incremental predictions: flushing, interruption, resume without duplicates; test CSV grouping."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from cora.evaluation.predictions import PredictionGroup, PredictionsError, PredictionWriter, read_predictions
from cora.evaluation.runner import evaluate, predict
from cora.evaluation.samples import EvalSample, read_eval_samples


def _samples(n: int) -> list[EvalSample]:
    return [
        EvalSample(f"img{i}.png", "describe", (f"scene {i} with a tree", f"a tree in scene {i}"), f"/x/img{i}.png")
        for i in range(n)
    ]


class Recorder:
    """A fake generator that records what it was asked and can fail after some batches."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[str] = []
        self.batches = 0
        self.fail_after = fail_after

    def __call__(self, batch):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.batches += 1
        self.calls.extend(s.url for s in batch)
        return [f"a tree in {s.url}" for s in batch]


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_interrupted_run_resumes_without_redoing_or_duplicating(tmp_path):
    samples = _samples(11)
    out = tmp_path / "predictions.csv"
    first = Recorder(fail_after=3)  # batches of 2: 6 samples done, then interrupted
    with pytest.raises(KeyboardInterrupt):
        predict(first, samples, out, batch_size=2, flush_every=4)
    # flushed at 4; the 2 pending complete samples are flushed on the way out
    assert [g.url for g in read_predictions(out)] == [f"img{i}.png" for i in range(6)]

    second = Recorder()
    assert predict(second, samples, out, batch_size=2, flush_every=4) == 5
    assert second.calls == [f"img{i}.png" for i in range(6, 11)]
    groups = read_predictions(out)
    assert [g.url for g in groups] == [s.url for s in samples]
    assert all(len(g.references) == 2 for g in groups)
    assert len(_rows(out)) == 22  # one row per reference
    assert predict(Recorder(), samples, out) == 0  # nothing left to do


def test_torn_write_is_cut_off_on_resume(tmp_path):
    out = tmp_path / "predictions.csv"
    with PredictionWriter(out, flush_every=1) as writer:
        writer.add(PredictionGroup("a", "q", "pred a", ("ref",)))
    good = out.read_bytes()
    with open(out, "ab") as handle:  # a crash in the middle of a flush
        handle.write(b'b,q,"half a predic')
    writer = PredictionWriter(out)
    assert writer.done == {("a", "q")}
    assert out.read_bytes() == good
    writer.add(PredictionGroup("b", "q", "pred b", ("ref",)))
    writer.flush()
    assert [g.prediction for g in read_predictions(out)] == ["pred a", "pred b"]
    with pytest.raises(PredictionsError, match=r"sample \('a', 'q'\) is already predicted"):
        writer.add(PredictionGroup("a", "q", "again", ()))


def test_multiline_predictions_and_no_reference_round_trip(tmp_path):
    out = tmp_path / "p.csv"
    with PredictionWriter(out, flush_every=10) as writer:
        writer.add(PredictionGroup("a, b.png", 'say "hi"', "line one\nline two", ("r1", "r2, with comma")))
        writer.add(PredictionGroup("c.png", "q", "p", ()))
    groups = read_predictions(out)
    assert groups[0] == PredictionGroup("a, b.png", 'say "hi"', "line one\nline two", ("r1", "r2, with comma"))
    assert groups[1].references == ()
    assert json.loads((tmp_path / "p.csv.progress.json").read_text())["samples"] == 2


def test_overwrite_starts_over(tmp_path):
    out = tmp_path / "p.csv"
    predict(Recorder(), _samples(3), out)
    rec = Recorder()
    predict(rec, _samples(2), out, resume=False)
    assert len(rec.calls) == 2 and len(read_predictions(out)) == 2


def test_generator_object_and_wrong_batch_length(tmp_path):
    class Gen:
        def generate(self, images, queries):
            assert images == ["/x/img0.png", "/x/img1.png"] and queries == ["describe"] * 2
            return ["x"]

    with pytest.raises(RuntimeError, match="returned 1 predictions for a batch of 2"):
        predict(Gen(), _samples(2), tmp_path / "p.csv", batch_size=2)


@pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
def test_evaluate_writes_predictions_and_metrics(tmp_path):
    pytest.importorskip("pycocoevalcap")
    result = evaluate(Recorder(), _samples(4), tmp_path / "ev", batch_size=3, metrics=["bleu4", "cider"])
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert on_disk["bleu4"] == result["bleu4"] and 0 < result["bleu4"] <= 1
    assert on_disk["n_samples"] == 4 and on_disk["predictions"].endswith("predictions.csv")


def test_read_eval_samples_groups_references_and_aliases(tmp_path):
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (16, 8)).save(data / "img" / name)
    path = data / "test.csv"
    path.write_text(
        "image,instruction,response\nimg/a.png,describe,one\nimg/b.png,describe,two\n"
        "img/a.png,describe,three\nimg/a.png,count,four\n"
    )
    samples = read_eval_samples(path)
    assert [(s.url, s.query, s.references) for s in samples] == [
        ("img/a.png", "describe", ("one", "three")),
        ("img/b.png", "describe", ("two",)),
        ("img/a.png", "count", ("four",)),
    ]
    assert samples[0].image == str((data / "img" / "a.png").resolve())
    path.write_text("url,annotation\nimg/a.png,x\n")
    with pytest.raises(ValueError, match=r"test.csv: missing column\(s\) 'query' or 'instruction'"):
        read_eval_samples(path)


def _synth_test_split(tmp_path):
    from cora.data.synth import write_synth_dataset

    write_synth_dataset(tmp_path / "synth", 20, seed=2, width=64, height=32, workers=1)
    return tmp_path / "synth"


class FromReferences:
    """Answers right (the first reference) when the question needs the seam, wrong otherwise."""

    def __call__(self, batch):
        return [s.references[0] if s.seam else "I do not know" for s in batch]


def test_metrics_json_reports_types_and_seam_subsets_of_a_synth_test_split(tmp_path):
    samples = read_eval_samples(_synth_test_split(tmp_path) / "test.csv")
    assert all(s.question_type is not None and s.seam is not None for s in samples)
    result = evaluate(FromReferences(), samples, tmp_path / "ev", metrics=[])
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert on_disk == result
    questions = [s for s in samples if s.question_type != "caption"]
    seam = [s for s in questions if s.seam]
    assert 0 < len(seam) < len(questions)
    assert result["exact_match"] == pytest.approx(len(seam) / len(questions))
    assert result["seam"] == {"n": len(seam), "exact_match": 1.0}
    assert result["no_seam"] == {"n": len(questions) - len(seam), "exact_match": 0.0}
    assert result["by_type"]["caption"] == {"n": 2, "exact_match": None}
    assert result["by_type"]["behind"] == {"n": 2, "exact_match": 1.0}  # behind always needs the seam
    assert set(result["by_type"]) == {s.question_type for s in samples}
    assert "yaw_error_deg" not in result  # no grounding answers in the CSV
    lines = [json.loads(line) for line in (tmp_path / "ev" / "per_question.jsonl").read_text().splitlines()]
    assert [(x["url"], x["query"]) for x in lines] == [s.key for s in samples]
    assert set(lines[0]) == {"url", "query", "type", "seam", "prediction", "exact_match", "yaw_error_deg"}
    assert [x["seam"] for x in lines] == [s.seam for s in samples]
    assert [x["exact_match"] for x in lines] == [None if s.question_type == "caption" else s.seam for s in samples]


class ShiftedBoxes:
    """Grounding answers: the reference box moved 10 norm1000 units (3.6°) to the right, or no box at all."""

    def __call__(self, batch):
        out = []
        for i, s in enumerate(batch):
            box = json.loads(s.references[0]).get("bbox_2d") if s.question_type == "grounding" else None
            if box is None or i % 3 == 0:
                out.append("somewhere")
            else:
                out.append(json.dumps({"bbox_2d": [(box[0] + 10) % 1000, box[1], (box[2] + 10) % 1000, box[3]]}))
        return out


def test_yaw_error_of_grounding_answers_and_unparsed_ones(tmp_path):
    samples = read_eval_samples(_synth_test_split(tmp_path) / "test.jsonl")
    grounding = [s for s in samples if s.question_type == "grounding"]
    assert grounding and {s.seam for s in samples if s.question_type == "caption"} == {None}
    result = evaluate(ShiftedBoxes(), samples, tmp_path / "ev", batch_size=len(samples), metrics=[])
    unparsed = sum(i % 3 == 0 for i, s in enumerate(samples) if s.question_type == "grounding")
    assert result["yaw_error_deg"] == {"n": len(grounding), "mean": pytest.approx(3.6), "unparsed": unparsed}
    lines = [json.loads(line) for line in (tmp_path / "ev" / "per_question.jsonl").read_text().splitlines()]
    errors = [x["yaw_error_deg"] for x in lines if x["type"] == "grounding"]
    assert errors.count(None) == unparsed and all(e == pytest.approx(3.6) for e in errors if e is not None)


def test_plain_csv_gives_todays_metrics_plus_exact_match(tmp_path):
    from cora.evaluation.runner import score_predictions

    result = evaluate(Recorder(), _samples(3), tmp_path / "ev", metrics=[])
    assert set(result) == {"n_samples", "n_references", "n_without_references", "seconds", "exact_match", "predictions"}
    assert result["exact_match"] == 0.0
    # scoring a predictions file alone: the same, no subsets (they need the samples' types and flags)
    again = score_predictions(tmp_path / "ev" / "predictions.csv", tmp_path / "again", metrics=[])
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in result.items() if k != "seconds"}
    assert len((tmp_path / "again" / "per_question.jsonl").read_text().splitlines()) == 3
