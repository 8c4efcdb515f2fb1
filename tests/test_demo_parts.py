"""Cheap pieces of the demo: the training-only corpus, the SVG loss plot, the verdict, the per-type table."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from cora.config import CoraConfig
from cora.recipes.demo.plots import read_curve, write_loss_plot


def test_train_corpus_holds_no_test_text():
    from cora.data.synth import SynthPano, split_of
    from cora.recipes.demo.corpus import train_corpus

    cfg = CoraConfig.model_validate({"data": {"synth": {"n": 20, "seed": 3}}})
    texts = set(train_corpus(cfg))
    pano = SynthPano(20, 3)
    test_captions = {pano.text(i).caption for i in range(20) if split_of(i, 20) == "test"}
    train_captions = {pano.text(i).caption for i in range(20) if split_of(i, 20) == "train"}
    assert train_captions <= texts
    assert not (test_captions - train_captions) & texts


def test_loss_plot_draws_one_curve_per_run_and_stage(tmp_path):
    for run, values in (("a", [3.0, 2.0, 1.0]), ("b", [3.0, 2.5, 2.4])):
        log = tmp_path / run / "logs" / "s1" / "metrics.csv"
        log.parent.mkdir(parents=True)
        log.write_text("epoch,loss,step\n" + "".join(f"0,{v},{i}\n" for i, v in enumerate(values)))
    assert read_curve(tmp_path / "a/logs/s1/metrics.csv") == [(0.0, 3.0), (1.0, 2.0), (2.0, 1.0)]
    out = write_loss_plot(tmp_path / "plot.svg", {"vision": tmp_path / "a", "blind": tmp_path / "b"}, ["s1", "s2"])
    root = ET.parse(out).getroot()
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    # The first run falls to the bottom of the panel, the second stays above it.
    last_y = [float(line.get("points").split()[-1].split(",")[1]) for line in lines]
    assert last_y[0] > last_y[1]


def test_verdict_needs_a_clear_margin():
    from cora.recipes.demo.summary import verdict

    blind = {"heldout_loss": 0.600, "answer_accuracy": 0.30}
    assert "no clear difference" in verdict({"heldout_loss": 0.599, "answer_accuracy": 0.31}, blind)
    assert "clearly helps" in verdict({"heldout_loss": 0.55, "answer_accuracy": 0.30}, blind)
    assert "clearly helps" in verdict({"heldout_loss": 0.60, "answer_accuracy": 0.40}, blind)


def test_type_table_shows_both_runs_per_question_type():
    from cora.recipes.demo.summary import type_table

    vision = {
        "caption": {"loss": 0.5, "questions": 40, "accuracy": None},
        "count": {"loss": 0.6, "questions": 40, "accuracy": 0.55},
    }
    blind = {
        "caption": {"loss": 0.51, "questions": 40, "accuracy": None},
        "count": {"loss": 0.75, "questions": 40, "accuracy": 0.3},
    }
    lines = type_table(vision, blind)
    count = next(line for line in lines if line.split()[0] == "count")
    assert count.split() == ["count", "40", "0.600", "0.750", "55%", "30%"]
    caption = next(line for line in lines if line.split()[0] == "caption")
    assert caption.split() == ["caption", "40", "0.500", "0.510", "-", "-"]
