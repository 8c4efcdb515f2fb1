"""``cora dry-run``: parameter table per stage, token counts, one batch per stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cora.cli.main import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_dry_run_tiny(kit_paths, tmp_path, capsys):
    cfg = tmp_path / "tiny-kit.yaml"
    cfg.write_text(
        f"extends: {CONFIGS / 'tiny.yaml'}\nmodels:\n  vision_name: {kit_paths.vision}\n"
        f"  language_model_name: {kit_paths.language_model}\n  resampler_type: bimamba\n"
        "  resampler: {depth: 1, d_state: 16}\n"
    )
    assert main(["dry-run", "--config", str(cfg), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vision_tokens"] == {"stride_views": 352, "unique": 320, "concat": 576}
    rows = {r["component"]: r for r in report["parameters"]}
    assert rows["vicreg_projector"]["stages"]["vision"]["trainable"] == rows["vicreg_projector"]["total"]
    assert rows["language_model"]["stages"]["resampler"]["trainable"] == 0
    assert rows["language_model"]["stages"]["finetune"]["mode"] == "lora"
    runs = report["stage_runs"]
    assert runs["vision"]["lm_loss"] is None and runs["vision"]["overlap_features"] == [1, 8, 8, 8, 128]
    assert runs["resampler"]["vision_tokens"] == 352 and runs["finetune"]["lm_loss"] > 0
    assert all(r["trainable"] == r["trainable_with_grad"] for r in runs.values())


@pytest.mark.slow
def test_dry_run_reference_architecture_matches_spec_sizes(capsys):
    assert main(["dry-run", "--config", str(CONFIGS / "reference-arch.yaml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vision_tokens"] == {"stride_views": 1408, "unique": 1280, "concat": 2304}
    totals = {r["component"]: r["total"] / 1e6 for r in report["parameters"]}
    # The reference design: ~400M, ~66M (we measure 57.9M: see the README), ~2M, ~1M, ~600M.
    assert 380 < totals["vision"] < 420
    assert 55 < totals["resampler"] < 60
    assert 2.0 < totals["vicreg_projector"] < 2.2
    assert 1.0 < totals["panorama_projector"] < 1.1
    assert 570 < totals["language_model"] < 630
    assert report["stage_runs"] is None


def test_dry_run_bad_config_exits_2(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"extends: {CONFIGS / 'tiny.yaml'}\nmodels:\n  vision_name: {tmp_path / 'nowhere'}\n")
    assert main(["dry-run", "--config", str(cfg)]) == 2
    assert "nowhere" in capsys.readouterr().err
