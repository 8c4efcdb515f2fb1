"""A skip-mode run counts what it trained on and names every row it skipped, once, in its summary."""

from __future__ import annotations

import json
from pathlib import Path

from cora.config import load_config
from cora.data.synth.dataset import write_synth_dataset
from cora.training.runner import train

ROOT = Path(__file__).resolve().parents[1]


def test_skip_mode_counts_trained_samples_and_names_each_skipped_row_once(tmp_path, kit_paths):
    synth = tmp_path / "synth"
    write_synth_dataset(synth, n=4, seed=0, width=128, height=64)
    rows = (synth / "train.csv").read_text().splitlines()
    good = (synth / "images" / "00000.png").read_bytes()
    (synth / "cut.png").write_bytes(good[: len(good) // 3])  # a readable header, pixels cut off
    bad = [f"cut.png,{r.split(',', 1)[1]}" for r in rows[1:3]]  # two rows whose image does not decode
    url, _, rest = rows[1].split(",", 2)
    empty_query = f"{url},,{rest}".encode()
    not_utf8 = rows[2].encode().replace(b",", b",\xff", 1)  # one byte that is not UTF-8, in the question
    lines = [r.encode() for r in [rows[0], *bad, *rows[1:5]]]
    # + two rows refused while the file is read (lines 8 and 9)
    (synth / "mixed.csv").write_bytes(b"\n".join([*lines, empty_query, not_utf8]) + b"\n")
    cfg = tmp_path / "skip.yaml"
    cfg.write_text(
        f"extends: {ROOT / 'configs' / 'tiny.yaml'}\n"
        f"experiment: {{name: skip, output_dir: {tmp_path / 'runs'}}}\n"
        f"models: {{vision_name: {kit_paths.vision}, language_model_name: {kit_paths.language_model}}}\n"
        f"data: {{train: {synth / 'mixed.csv'}, val: null, view_cache: 0, bad_row_policy: skip}}\n"
        "training:\n  stages: [finetune]\n  progress_bar: false\n  loggers: [csv]\n"
        "  stage_configs: {finetune: {max_steps: 4, batch_size: 3}}\n"
    )
    result = train(load_config(cfg))
    summary = result.summaries["finetune"]
    # 4 steps × 3 drawn = 12 draws over 6 rows (2 bad): every draw of a bad row is not a trained sample.
    assert summary["samples"] + summary["skipped_samples"] == 12 and summary["skipped_samples"] > 0
    # every bad row once, whether refused when read (lines 8, 9) or when its image failed to decode (2, 3)
    assert summary["skipped_rows"] == 4 and summary["skipped_rows_read"] == 2
    assert [b.split(": ", 1)[0] for b in summary["bad_rows"]] == [f"{synth / 'mixed.csv'}:{n}" for n in (2, 3, 8, 9)]
    assert sum(summary["skipped_rows_by_reason"].values()) == 4
    state = json.loads((tmp_path / "runs" / "skip" / "stage_state.json").read_text())
    assert state["summaries"]["finetune"]["skipped_rows"] == 4
