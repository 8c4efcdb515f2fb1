"""``cora tiles``: PNG per view, views.json geometry that round-trips, a contact sheet."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cora.cli.main import main
from cora.processors.contact_sheet import footprint
from cora.processors.geometry import ViewGeometry, perspective_view


def test_tiles_writes_views_json_and_contact_sheet(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pano = tmp_path / "pano.png"
    erp = rng.integers(0, 256, (128, 256, 3), dtype=np.uint8)
    cv2.imwrite(str(pano), erp)
    config = tmp_path / "cfg.yaml"
    config.write_text("image_processing: {crop_strategy: cubemap, image_size: 32, cubemap_faces: 6}\n")
    out = tmp_path / "out"
    assert main(["tiles", str(pano), "--config", str(config), "--out", str(out)]) == 0
    meta = json.loads((out / "views.json").read_text())
    assert meta["erp_size"] == [256, 128] and len(meta["views"]) == 6
    geoms = [ViewGeometry.from_dict({k: v for k, v in rec.items() if k != "file"}) for rec in meta["views"]]
    assert [g.pitch_deg for g in geoms] == [0, 0, 0, 0, 90, -90]
    for rec in meta["views"]:
        tile = cv2.imread(str(out / rec["file"]))
        assert tile.shape == (32, 32, 3)
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape[1] == 1200 and sheet.shape[0] > 600
    assert not list(out.glob(".*.tmp"))  # atomic writes left no temp files


def test_tiles_bad_image_is_a_user_error(tmp_path, capsys) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    config = tmp_path / "cfg.yaml"
    config.write_text("image_processing: {image_size: 16}\n")
    assert main(["tiles", str(bad), "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_footprint_splits_at_the_seam() -> None:
    lines = footprint(perspective_view(180, 0, 90, 64), 400, 200)
    assert len(lines) == 2  # one polyline each side of the ±180° seam
    assert all(np.abs(np.diff(line[:, 0])).max() < 200 for line in lines)
    (centre,) = footprint(perspective_view(0, 0, 90, 64), 400, 200)
    assert centre[:, 0].min() == pytest.approx(150, abs=2) and centre[:, 0].max() == pytest.approx(250, abs=2)
