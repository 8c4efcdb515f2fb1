"""An adapted VLM end to end through the CLI: cora train (stage runner), cora eval, cora export [--merge]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cora.adapt.data import AdaptCollator
from cora.adapt.run import load_adapt_run
from cora.cli.main import main
from cora.data.synth.dataset import write_synth_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, n=4, seed=0, width=128, height=64)
    return out


def _config(tmp_path: Path, synth: Path, adapt: str = "{family: qwen2_5_vl}", name: str = "run") -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"""extends: {ROOT / "configs" / "adapt-qwen2_5_vl-tiny.yaml"}
experiment: {{name: {name}, output_dir: {tmp_path / "runs"}}}
adapt: {adapt}
data: {{train: {synth / "train.csv"}, val: null, num_workers: 0}}
training:
  stage_configs:
    aligner: {{max_steps: 1}}
    lora: {{max_steps: 1}}
  progress_bar: false
evaluation: {{metrics: [bleu4, rouge_l, cider], max_new_tokens: 3, batch_size: 4}}
""")
    return cfg


@pytest.mark.slow
def test_train_eval_export_through_the_cli(tmp_path, synth, capsys):
    cfg = _config(tmp_path, synth)
    assert main(["train", "--config", str(cfg), "--stage", "aligner"]) == 0
    # --resume auto runs what is left (stage B), replaying stage A's recipe and weights first
    assert main(["train", "--config", str(cfg), "--resume", "auto"]) == 0
    run = tmp_path / "runs" / "run"
    state = json.loads((run / "stage_state.json").read_text())
    assert state["completed"] == ["aligner", "lora"]
    for stage in ("aligner", "lora"):  # both losses trained: LM + overlap on the merger's tile features
        train = state["summaries"][stage]["train"]
        assert train["overlap_loss"] > 0 and train["lm_loss"] > 0
    assert state["summaries"]["aligner"]["trainable_parameters"] < state["summaries"]["lora"]["trainable_parameters"]

    assert (
        main(["eval", "--checkpoint", str(run), "--test-csv", str(synth / "test.csv"), "--out", str(tmp_path / "eval")])
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "cider" in json.dumps(metrics)
    assert (tmp_path / "eval" / "predictions.csv").read_text().count("\n") > 1

    image = str(synth / "images" / "00000.png")
    capsys.readouterr()
    assert (
        main(
            ["generate", "--checkpoint", str(run), "--image", image, "--query", "Where?", "--query", "What?", "--json"]
        )
        == 0
    )
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["query"] for a in answers] == ["Where?", "What?"] and all(a["tokens"] <= 3 for a in answers)
    assert main(["generate", "--checkpoint", str(run), "--image", image, "--query", "Where?", "--stream"]) == 0

    assert main(["export", "--run", str(run), "--out", str(tmp_path / "adapter")]) == 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "merged"), "--merge"]) == 0
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "merged"), "--merge"]) == 2
    assert "already exists" in capsys.readouterr().err
    # the family's own processor class (AutoProcessor resolves it), and a card naming base, data and recipe
    saved = json.loads((tmp_path / "merged" / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen2_5_VLProcessor"
    card = (tmp_path / "merged" / "README.md").read_text()
    assert card.startswith("---\n") and "base_model:" in card and "## Training recipe" in card
    assert str(synth / "train.csv") in card and "| aligner |" in card

    # The merged folder loads with the model's own from_pretrained and gives the run's logits.
    model = load_adapt_run(run)
    from transformers import Qwen2_5_VLForConditionalGeneration

    merged = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    collate = AdaptCollator(model.family, model.processor)
    from cora.adapt.inputs import PanoramaInputs
    from cora.config import load_config

    config = load_config(run / "config.yaml")
    views = PanoramaInputs("anyres_e2p", config.image_processing).view_batch(synth / "images" / "00000.png")
    item = {
        "pixel_values": views.pixels,
        "geometries": views.geometries,
        "meta": {"query": "What is behind you?", "references": ["a cube"], "source": "test"},
    }
    batch = collate([item])
    with torch.no_grad():
        want = model(batch["pixel_values"], batch["geometries"], batch["input_ids"], batch["attention_mask"]).logits
        model.adapted.model = merged
        model.adapted.set_peft(None)
        got = model(batch["pixel_values"], batch["geometries"], batch["input_ids"], batch["attention_mask"]).logits
    assert torch.allclose(got, want, atol=1e-4)


def test_export_of_a_native_run_that_never_finished_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("experiment: {name: x}\n")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "o")]) == 2
    assert "no exported model" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_train_refuses_settings_that_cannot_work(tmp_path, synth, capsys):
    cfg = _config(tmp_path, synth, "{family: blip2}")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "takes one image per turn (use native or resize)" in capsys.readouterr().err

    cfg = _config(tmp_path, synth, "{family: qwen2_5_vl, input_mode: resize}", name="run2")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "overlap_loss_weight > 0 needs overlapping tiles: adapt.input_mode 'resize'" in capsys.readouterr().err
