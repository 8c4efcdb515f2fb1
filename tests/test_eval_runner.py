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
