"""CORA as a Hugging Face model: AutoConfig / AutoModel / AutoModelForImageTextToText / AutoProcessor on a
saved model, a run folder and a self-contained export (LoRA merged, no base model needed)."""

from __future__ import annotations

import shutil

import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

from cora.inference import PanoramaGenerator
from cora.model.hf import CoraForImageTextToText, CoraHFConfig, CoraProcessor
from tests.test_generator import OPTIONS, panoramas, tiny  # noqa: F401  (fixtures)

QUERY = "What is on the left?"


def _answers(model, processor, images) -> list[str]:
    inputs = processor(images, [QUERY] * len(images))
    ids = model.generate(**inputs, max_new_tokens=OPTIONS.max_new_tokens, do_sample=False)
    return processor.batch_decode(ids)


def test_auto_classes_load_a_saved_model_with_the_same_answers(tiny, panoramas, tmp_path):  # noqa: F811
    model, cfg = tiny
    model.language_model.apply_lora(r=4, alpha=8)  # a trained run's model carries its LoRA
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    saved = tmp_path / "saved"
    model.save_pretrained(saved, run_config=cfg)
    config = AutoConfig.from_pretrained(saved)
    assert isinstance(config, CoraHFConfig) and config.model_type == "cora" and config.weights == "trainable"
    assert config.cora["models"]["resampler_type"] == "mlp"
    loaded = AutoModel.from_pretrained(saved)
    assert isinstance(loaded, CoraForImageTextToText)
    assert type(AutoModelForImageTextToText.from_pretrained(saved)) is CoraForImageTextToText
    processor = AutoProcessor.from_pretrained(saved)
    assert isinstance(processor, CoraProcessor)
    reference = PanoramaGenerator.from_model(model.eval(), cfg)
    expected = reference.generate(panoramas, [QUERY] * len(panoramas), max_new_tokens=OPTIONS.max_new_tokens)
    assert _answers(loaded, processor, panoramas) == expected

    # a run folder (runs/<name>, its model in model/, as the runner exports it) loads too
    from cora.training.runner import export_native_model

    run = tmp_path / "run"
    export_native_model(model, run / "model", cfg)
    assert _answers(AutoModel.from_pretrained(run), processor, panoramas) == expected

    # the export holds every weight (LoRA merged) and loads with its base models gone
    export = tmp_path / "export"
    loaded.save_pretrained(export, full=True)
    CoraProcessor.from_pretrained(saved).save_pretrained(export)
    assert AutoConfig.from_pretrained(export).weights == "full"
    moved = tmp_path / "elsewhere"
    shutil.move(str(export), moved)  # its config names its own folders relative to itself
    exported = AutoModelForImageTextToText.from_pretrained(moved)
    assert not exported.model.language_model.has_lora
    assert _answers(exported, AutoProcessor.from_pretrained(moved), panoramas) == expected


def test_cora_export_of_a_native_run_is_a_self_contained_hf_folder(tiny, panoramas, tmp_path, capsys):  # noqa: F811
    from cora.cli.main import main
    from cora.config import save_config
    from cora.training.runner import export_native_model

    model, cfg = tiny
    run = tmp_path / "runs" / "r"
    export_native_model(model, run / "model", cfg)
    save_config(cfg, run / "config.yaml")  # what `cora train` leaves in a run folder besides model/
    expected = _answers(AutoModel.from_pretrained(run), AutoProcessor.from_pretrained(run), panoramas)
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "out")]) == 0
    assert "CORA model (every weight, LoRA merged) + processor written to" in capsys.readouterr().out
    out = tmp_path / "out"
    assert {"config.json", "config.yaml", "vision", "language_model", "README.md"} <= {p.name for p in out.iterdir()}
    assert "library_name: cora" in (out / "README.md").read_text()
    exported = AutoModelForImageTextToText.from_pretrained(out)
    assert _answers(exported, AutoProcessor.from_pretrained(out), panoramas) == expected


def test_import_cora_registers_once_transformers_auto_classes_load_even_after_a_probe():
    """`import cora` stays light (no transformers), `import transformers` too (no cora.model); an
    `importlib.util.find_spec("transformers")` probe (how libraries ask whether it is installed) does not use
    the registration up; loading the Auto classes registers."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.util, cora\n"
        "assert 'transformers' not in sys.modules\n"
        "importlib.util.find_spec('transformers')\n"
        "import transformers\n"
        "assert 'cora.model' not in sys.modules  # plain `import transformers` stays as cheap as without us\n"
        "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
        "print('cora' in CONFIG_MAPPING)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
