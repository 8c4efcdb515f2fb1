"""``cora report`` tables and ``cora eval --predictions``."""

from __future__ import annotations

import json
import shutil

import pytest

from cora.cli.main import main
from cora.evaluation.report import ReportError, load_runs, render, report


def _run(tmp_path, name, sub=None, **values):
    folder = tmp_path / name / sub if sub else tmp_path / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(values))
    return tmp_path / name


@pytest.fixture
def runs(tmp_path):
    a = _run(
        tmp_path,
        "cora_base",
        bleu4=0.1,
        meteor=0.2,
        rouge_l=0.3,
        cider=0.5,
        spice=None,
        unavailable={"spice": "no CoreNLP"},
    )
    b = _run(tmp_path, "cora-large", sub="eval", bleu4=0.15, meteor=0.18, rouge_l=0.3, cider=0.7, spice=None)
    return [a, b]


def test_markdown_bolds_the_best_and_drops_empty_columns(runs):
    table = report(runs, fmt="md")
    assert table.splitlines() == [
        "| run | BLEU-4 | METEOR | ROUGE-L | CIDEr |",
        "|---|---:|---:|---:|---:|",
        "| cora_base | 0.1000 | **0.2000** | **0.3000** | 0.5000 |",
        "| cora-large | **0.1500** | 0.1800 | **0.3000** | **0.7000** |",
    ]


def test_latex_and_csv(runs):
    latex = report(runs, fmt="latex").splitlines()
    assert latex[0] == r"\begin{tabular}{lrrrr}"
    assert latex[2] == r"Run & BLEU-4 & METEOR & ROUGE-L & CIDEr \\"
    assert latex[4] == r"cora\_base & 0.1000 & \textbf{0.2000} & \textbf{0.3000} & 0.5000 \\"
    assert latex[-1] == r"\end{tabular}"
    assert report(runs, fmt="csv").splitlines() == [
        "run,bleu4,meteor,rouge_l,cider",
        "cora_base,0.1000,0.2000,0.3000,0.5000",
        "cora-large,0.1500,0.1800,0.3000,0.7000",
    ]


def test_missing_values_and_errors(tmp_path):
    a = _run(tmp_path, "a", bleu4=0.1, judge=0.5)
    b = _run(tmp_path, "b", bleu4=0.2)
    assert "| a | 0.1000 | **0.5000** |" in render(load_runs([a, b]), "md")
    assert "| b | **0.2000** | – |" in render(load_runs([a, b]), "md")
    with pytest.raises(ReportError, match=r"several metrics.json .*: name one of them"):
        report([tmp_path / "a", tmp_path])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="empty: no metrics.json"):
        report([tmp_path / "empty"])
    (tmp_path / "a" / "metrics.json").write_text('{"bleu4": "high"}')
    with pytest.raises(ReportError, match=r"metrics.json: field 'bleu4' is 'high', not a number or null"):
        report([a])


def test_report_cli(runs, tmp_path, capsys):
    assert main(["report", *map(str, runs), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("run,bleu4,meteor")
    out = tmp_path / "table.tex"
    assert main(["report", *map(str, runs), "--format", "latex", "--out", str(out)]) == 0
    assert out.read_text().startswith(r"\begin{tabular}")
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
def test_eval_predictions_cli(tmp_path, capsys):
    pytest.importorskip("pycocoevalcap")
    pred = tmp_path / "pred.csv"
    pred.write_text(
        "url,query,prediction,annotation\na.png,q,a red house,a red house\n"
        "b.png,q,a small boat on a lake,a boat on the lake\n"
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("evaluation:\n  metrics: [bleu4, rouge_l]\n")
    assert main(["eval", "--predictions", str(pred), "--out", str(tmp_path / "ev"), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "ROUGE-L" in out and "METEOR" not in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics) >= {"bleu4", "rouge_l", "n_samples"} and metrics["n_samples"] == 2
    assert main(["eval", "--out", str(tmp_path / "ev")]) == 2
    assert "give either --predictions" in capsys.readouterr().err
    pred.write_text("url,query,annotation\na,q,r\n")
    assert main(["eval", "--predictions", str(pred), "--out", str(tmp_path / "ev")]) == 2
    assert "missing column(s) ['prediction']" in capsys.readouterr().err
