"""The recipes layer: the library never imports it, the demo's config section, and the demo's
config resolution (no config is changed in place) and CLI wrapper."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from cora.config import ConfigError, CoraConfig, load_config, load_raw

from .conftest import CONFIGS, ROOT

SRC = ROOT / "src" / "cora"


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import``/``from`` statement of ``path`` names, lazy ones inside functions too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _importers_of_recipes(files: list[Path]) -> list[str]:
    return sorted(
        str(path.relative_to(SRC))
        for path in files
        if any(m == "cora.recipes" or m.startswith("cora.recipes.") for m in _imported_modules(path))
    )


def test_the_library_never_imports_a_recipe():
    # Everything but the CLI (training, model, inference, data, ... and top-level modules).
    library = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in ("cli", "recipes")]
    assert {p.relative_to(SRC).parts[0] for p in library} >= {"training", "model", "inference", "__init__.py"}
    assert _importers_of_recipes(library) == []


def test_the_scan_finds_a_recipe_import():
    # The CLI is allowed to run recipes, and does: the scan above would see such an import.
    assert _importers_of_recipes(list((SRC / "cli").rglob("*.py"))) == [
        "cli/demo_cmd.py",
        "cli/export_cmd.py",  # the model card
        "cli/report_cmd.py",
        "cli/sweep_cmd.py",
        "cli/train_cmd.py",  # a kit config's preparation (data, kit, priors)
    ]


def test_tiny_config_keeps_the_demo_priors_in_the_demo_section():
    raw, _ = load_raw(CONFIGS / "tiny.yaml")
    assert not {"language_prior", "vision_prior"} & set(raw["training"])
    assert raw["demo"] == {
        "language_prior": {"enabled": True, "steps": 200, "lr": 3.0e-3, "batch_size": 16, "seq_len": 64},
        "vision_prior": {"enabled": True, "steps": 900, "lr": 2.0e-3, "batch_size": 64},
    }


def test_training_language_prior_is_an_unknown_key(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"training": {"language_prior": {"enabled": True}}}))
    with pytest.raises(ConfigError, match=rf"{old}: training.language_prior: unknown key"):
        load_config(old)


def test_demo_resolution_leaves_the_loaded_config_as_it_was(tmp_path):
    from cora.recipes.demo.resolve import blind_config, demo_settings, resolve_config

    config = CoraConfig.model_validate(
        {"experiment": {"name": "d"}, "data": {"train": "mine.csv", "synth": {"out_dir": str(tmp_path)}}}
    )
    before = config.model_dump()
    resolved = resolve_config(config)
    blind = blind_config(resolved)
    assert config.model_dump() == before
    # Only unset paths point at the generated dataset.
    data = resolved.data
    assert (data.train, data.val, data.test, data.vision_train) == (
        "mine.csv",
        str(tmp_path / "val.csv"),
        str(tmp_path / "test.csv"),
        str(tmp_path / "train_images.csv"),
    )
    assert (blind.experiment.name, blind.training.blind, blind.data) == ("d-blind", True, resolved.data)
    assert (resolved.experiment.name, resolved.training.blind) == ("d", False)
    # Copies all the way down: no section is shared with the loaded config or between the runs.
    assert resolved.training.stage_configs["finetune"] is not config.training.stage_configs["finetune"]
    assert blind.training.stage_configs["finetune"] is not resolved.training.stage_configs["finetune"]
    assert demo_settings(config) == demo_settings(resolved.model_copy(update={"demo": None}))
    assert not demo_settings(config).language_prior.enabled and not demo_settings(config).vision_prior.enabled


def test_demo_command_prints_each_step_and_the_summary(tmp_path, monkeypatch, capsys):
    import cora.recipes.demo as recipe
    from cora.cli.main import main

    def fake_run(config, on_step):
        on_step("SynthPano data", 1.25, "written")
        return recipe.DemoOutcome({}, "the summary", tmp_path / "demo_summary.json")

    monkeypatch.setattr(recipe, "run_demo", fake_run)
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    assert main(["demo", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out == f"[   1.2s] SynthPano data: written\nthe summary\n  summary file: {tmp_path / 'demo_summary.json'}\n"


def test_demo_command_reports_a_config_it_cannot_run(tmp_path, monkeypatch, capsys):
    import cora.recipes.demo as recipe
    from cora.cli.main import main

    def fake_run(config, on_step):
        raise recipe.DemoError("the demo needs a kit: section (see configs/tiny.yaml)")

    monkeypatch.setattr(recipe, "run_demo", fake_run)
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    assert main(["demo", "--config", str(config)]) == 2
    assert capsys.readouterr().err == "error: the demo needs a kit: section (see configs/tiny.yaml)\n"


def test_run_demo_gives_every_step_the_resolved_configs_and_writes_the_summary(tmp_path, monkeypatch):
    import json

    import cora.recipes.demo.run as run_module

    config = CoraConfig.model_validate(
        {"experiment": {"name": "d", "output_dir": str(tmp_path)}, "data": {"synth": {"out_dir": str(tmp_path)}}}
    )
    before = config.model_dump()
    seen = []
    row = {"heldout_loss": 0.5, "answer_accuracy": 0.5, "predictions": "p", "metrics_json": "m", "by_type": {}}

    def step(run):
        seen.append((run.config.data.test, run.blind.experiment.name, run.blind.training.blind))
        run.results.update({"eval_vision": row, "eval_blind": row, "plot": "plot.svg"})
        return "done"

    monkeypatch.setattr(run_module, "STEPS", [("one", step), ("two", step)])
    lines = []
    outcome = run_module.run_demo(config, on_step=lambda name, seconds, line: lines.append((name, line)))
    assert lines == [("one", "done"), ("two", "done")]
    assert seen == [(str(tmp_path / "test.csv"), "d-blind", True)] * 2
    assert config.model_dump() == before
    assert outcome.summary_file == tmp_path / "d" / "demo_summary.json"
    written = json.loads(outcome.summary_file.read_text())
    assert list(written) == ["eval_vision", "eval_blind", "plot", "seconds", "verdict"]
    assert "makes no clear difference" in written["verdict"] and written["verdict"] in outcome.summary
