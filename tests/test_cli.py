from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from cora.cli.main import build_parser, main

from .conftest import CONFIGS


def test_config_show_prints_the_merged_config(capsys) -> None:
    assert main(["config", "show", str(CONFIGS / "tiny.yaml")]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["experiment"]["name"] == "cora-tiny"
    assert shown["image_processing"]["crop_strategy"] == "anyres_e2p"  # from default.yaml
    assert shown["image_processing"]["image_size"] == 64  # from tiny.yaml


def test_config_typo_exits_nonzero_with_key_file_and_suggestion(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {CONFIGS / 'tiny.yaml'}\nmodels:\n  resampler_typ: mlp\n")
    assert main(["config", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: models.resampler_typ: unknown key (did you mean 'resampler_type'?)" in err


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        assert sub.format_help().strip(), name


def test_console_script_runs() -> None:
    # The installed entry point, not just the function: `cora --help` must work.
    cora = Path(sys.executable).parent / "cora"
    out = subprocess.run([str(cora), "--help"], capture_output=True, text=True, check=True)
    assert "config" in out.stdout and "kit" in out.stdout


def test_kit_build_command(tmp_path: Path, capsys) -> None:
    assert main(["kit", "build", "--config", str(CONFIGS / "tiny.yaml"), "--out", str(tmp_path / "kit")]) == 0
    assert (tmp_path / "kit" / "vision" / "config.json").is_file()
    assert (tmp_path / "kit" / "language_model" / "tokenizer.json").is_file()


def test_kit_build_without_kit_section(capsys) -> None:
    assert main(["kit", "build", "--config", str(CONFIGS / "default.yaml")]) == 2
    assert "has no kit: section" in capsys.readouterr().err
