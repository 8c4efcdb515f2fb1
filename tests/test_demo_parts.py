"""Cheap pieces of the demo: the training-only corpus, the loss curves, the verdict, the per-type table."""

from __future__ import annotations

from cora.config import CoraConfig
from cora.training.curves import read_curve, stage_curves, write_loss_curves


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


def test_loss_curves_draw_train_and_held_out_loss_per_run_and_stage(tmp_path):
    rows = {"a": [("3.0", ""), ("2.0", ""), ("", "2.5"), ("1.0", "")], "b": [("3.0", ""), ("2.5", ""), ("2.4", "")]}
    for run, values in rows.items():
        log = tmp_path / run / "logs" / "s1" / "metrics.csv"
        log.parent.mkdir(parents=True)
        body = "".join(f"0,{loss},{i},{val}\n" for i, (loss, val) in enumerate(values))
        log.write_text("epoch,loss,step,val/val_loss\n" + body)
    assert read_curve(tmp_path / "a/logs/s1/metrics.csv") == [(0.0, 3.0), (1.0, 2.0), (3.0, 1.0)]
    runs = {"vision": tmp_path / "a", "blind": tmp_path / "b"}
    assert stage_curves(runs, "s1") == {
        "vision train": [(0.0, 3.0), (1.0, 2.0), (3.0, 1.0)],
        "vision held-out": [(2.0, 2.5)],
        "blind train": [(0.0, 3.0), (1.0, 2.5), (2.0, 2.4)],
    }
    out = write_loss_curves(tmp_path / "plot.png", runs, ["s1", "s2"])  # s2 has no logs: no panel
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".plot-*"))
    from PIL import Image

    assert Image.open(out).size[0] < 600  # one panel, not two
    assert write_loss_curves(tmp_path / "none.png", runs, ["s2"]) is None


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
