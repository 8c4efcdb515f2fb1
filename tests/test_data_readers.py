"""CSV/JSONL readers: columns, relative paths, bad rows per policy, norm1000, URL cache, validate."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cora.cli.main import main
from cora.data.fetch import cache_path, fetch_url
from cora.data.jsonl import geometry_text, norm1000_points
from cora.data.readers import read_records
from cora.data.records import DataError


def _png(path: Path, width: int = 32, height: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return path


def test_csv_both_column_styles_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "a.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("image,instruction,response\n../imgs/a.png,What?,A cube.\n")
    (tmp_path / "q.csv").write_text('url,query,annotation\nimgs/a.png,"Describe, please.","A ""red"" ball."\n')
    recs, log = read_records(tmp_path / "sub" / "d.csv")
    assert recs[0].image == str((tmp_path / "imgs" / "a.png").resolve())
    assert (recs[0].query, recs[0].answer, recs[0].line) == ("What?", "A cube.", 2)
    recs, _ = read_records(tmp_path / "q.csv")
    assert (recs[0].query, recs[0].answer) == ("Describe, please.", 'A "red" ball.')
    assert log.ok


BAD_CSV = """url,query,annotation
a.png,What?,Fine.
missing.png,What?,Gone.
a.png,What?,
a.png,"A multi
line query",Fine too.
a.png,too,many,fields
,What?,No image.
"""


def test_bad_csv_rows_error_names_file_and_line(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text(BAD_CSV)
    with pytest.raises(DataError, match=r"d\.csv:3: image not found: .*missing\.png"):
        read_records(tmp_path / "d.csv", policy="error")


def test_bad_csv_rows_skip_counts_each_with_file_line_reason(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text(BAD_CSV)
    recs, log = read_records(tmp_path / "d.csv", policy="skip")
    assert [(r.line, r.query) for r in recs] == [(2, "What?"), (5, "A multi\nline query")]
    got = [(b.line, b.kind) for b in log.rows]
    assert got == [(3, "image not found"), (4, "empty annotation"), (7, "malformed row"), (8, "empty url")]
    assert all(b.file == str(tmp_path / "d.csv") for b in log.rows)
    assert log.summary()["by_reason"] == {
        "image not found": 1,
        "empty annotation": 1,
        "malformed row": 1,
        "empty url": 1,
    }


def test_missing_column_is_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("url,query\na.png,What?\n")
    with pytest.raises(DataError, match=r"d\.csv: missing column\(s\) 'annotation' or 'response'"):
        read_records(tmp_path / "d.csv", policy="skip")


def test_image_only_csv_gives_each_image_once(tmp_path: Path) -> None:
    _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    (tmp_path / "d.csv").write_text("url,query,annotation\na.png,q1,x\na.png,q2,y\nb.png,q1,z\n")
    (tmp_path / "i.csv").write_text("url\nb.png\n")
    recs, _ = read_records(tmp_path / "d.csv", image_only=True)
    assert [Path(r.image).name for r in recs] == ["a.png", "b.png"] and recs[0].answer is None
    assert len(read_records(tmp_path / "i.csv", image_only=True)[0]) == 1


def test_norm1000_conversions() -> None:
    assert norm1000_points([0, 0, 2048, 1024], 2048, 1024) == [0, 0, 1000, 1000]
    assert norm1000_points([512, 256, 1536, 768], 2048, 1024) == [250, 250, 750, 750]
    assert norm1000_points([-5, 2000, 1, 1], 100, 100) == [0, 1000, 10, 10]  # clamped, y uses height
    quad = [0, 0, 100, 0, 100, 50, 0, 50]
    assert json.loads(geometry_text({"quad": quad}, 200, 100)) == {"quad": [0, 0, 500, 0, 500, 500, 0, 500]}
    assert json.loads(geometry_text({"line": [10, 10, 30, 20]}, 200, 100)) == {"line": [50, 100, 150, 200]}


def test_jsonl_rows_turns_several_images_and_bad_lines(tmp_path: Path) -> None:
    _png(tmp_path / "p" / "a.png", 200, 100), _png(tmp_path / "p" / "b.png", 200, 100)
    rows = [
        {
            "images": ["p/a.png", "p/b.png"],
            "width": 200,
            "height": 100,
            "summary": "Two rooms.",
            "objects": [{"bbox_2d": [20, 10, 60, 50], "desc": "red door"}, {"line": [0, 0, 200, 100]}],
            "qa": [{"query": "How many doors?", "answer": "one"}],
        },
        {"images": ["p/a.png"], "objects": [{"quad": [0, 0, 100, 0, 100, 50, 0, 50], "desc": "sign"}]},
    ]
    text = "\n".join(json.dumps(r) for r in rows)
    text += '\n{"images": ["p/a.png"], "summary": \n'  # line 3: malformed JSON
    text += '\n{"images": ["p/a.png"], "objects": [{"bbox_2d": [1, 2, 3]}], "summary": "x"}\n'  # line 5
    text += '{"images": [], "summary": "x"}\n'  # line 6
    text += '{"images": ["p/a.png"]}\n'  # line 7: no text
    (tmp_path / "d.jsonl").write_text(text)
    recs, log = read_records(tmp_path / "d.jsonl", policy="skip")
    first = [r for r in recs if r.line == 1]
    assert [(r.query, r.answer) for r in first] == [
        ("Describe the panorama.", "Two rooms."),
        ("How many doors?", "one"),
        ("Locate the red door.", '{"bbox_2d": [100, 100, 300, 500]}'),
    ]
    assert len(first[0].images) == 2 and first[0].images[1].endswith("b.png")
    second = [r for r in recs if r.line == 2]  # width/height read from the image header
    quad = '{"quad": [0, 0, 500, 0, 500, 500, 0, 500]}'
    assert [(r.query, r.answer) for r in second] == [("Locate the sign.", quad)]
    assert [(b.line, b.kind) for b in log.rows] == [
        (3, "malformed JSON"),
        (5, "objects[0]"),
        (6, "missing 'images' (a non-empty list of paths or URLs)"),
        (7, "no text"),
    ]
    assert "bbox_2d needs 4 numbers, got 3" in log.rows[1].reason
    with pytest.raises(DataError, match=r"d\.jsonl:3: malformed JSON"):
        read_records(tmp_path / "d.jsonl", policy="error")


def test_url_fetch_offline_error_names_url_and_cache(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/pano.png"  # discard port: connection refused, no real network
    with pytest.raises(DataError, match=r"cannot download http://127\.0\.0\.1:9/pano\.png.*copy the file to"):
        fetch_url(url, tmp_path, timeout=2)
    # A file put in the cache by hand is used without any network access.
    _png(cache_path(url, tmp_path))
    assert fetch_url(url, tmp_path) == cache_path(url, tmp_path)


def test_url_is_fetched_once_into_the_cache(tmp_path: Path) -> None:
    payload = _png(tmp_path / "src.png").read_bytes()
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/x/pano.png"
        first = fetch_url(url, tmp_path / "cache")
        second = fetch_url(url, tmp_path / "cache")
    finally:
        server.shutdown()
    assert first == second and first.read_bytes() == payload and first.suffix == ".png"
    assert hits == ["/x/pano.png"]


def test_validate_cli_reports_and_strict_exit_code(tmp_path: Path, capsys) -> None:
    _png(tmp_path / "a.png", 64, 32)
    (tmp_path / "broken.png").write_bytes(b"not a png")  # bad header: a bad row when read
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 256, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    full = (tmp_path / "big.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])  # good header, truncated pixels
    (tmp_path / "d.csv").write_text(BAD_CSV + "broken.png,What?,Bad image.\ncut.png,What?,Cut image.\n")
    assert main(["data", "validate", str(tmp_path / "d.csv")]) == 0
    out = capsys.readouterr().out
    # The cut image's row is a bad row too (its pixels do not decode): 2 usable, 6 bad.
    assert "examples: 2 usable; bad rows: 6" in out
    assert f"{tmp_path / 'd.csv'}:10: unreadable image: " in out
    assert "images: 2 referenced, 1 readable, 1 bad" in out
    assert "64x32 (1)" in out and "2.00:1 (1)" in out
    assert f"{tmp_path / 'd.csv'}:4: empty annotation" in out
    assert f"{tmp_path / 'd.csv'}:9: unreadable image: {tmp_path / 'broken.png'}" in out
    assert "cut.png: not a readable image" in out
    assert main(["data", "validate", str(tmp_path / "d.csv"), "--strict"]) == 1
    (tmp_path / "ok.csv").write_text("url,query,annotation\na.png,q,a\n")
    assert main(["data", "validate", str(tmp_path / "ok.csv"), "--strict"]) == 0


def test_validate_unusable_file_exits_2_and_urls_offline_are_bad_images(tmp_path: Path, capsys) -> None:
    (tmp_path / "cols.csv").write_text("url,query\na.png,q\n")
    assert main(["data", "validate", str(tmp_path / "cols.csv")]) == 2
    assert "missing column(s) 'annotation' or 'response'" in capsys.readouterr().out
    assert main(["data", "validate", str(tmp_path / "nope.jsonl")]) == 2
    assert "dataset file not found" in capsys.readouterr().out
    row = {"images": ["http://127.0.0.1:9/p.png"], "summary": "A room."}
    (tmp_path / "u.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["data", "validate", str(tmp_path / "u.jsonl"), "--cache-dir", str(tmp_path / "c"), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "bad image cannot download http://127.0.0.1:9/p.png" in out


def test_binary_or_unknown_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bin.csv").write_bytes(b"url,query,annotation\n\xff\xfe\x00bad\n")
    with pytest.raises(DataError, match=r"bin\.csv:2: not UTF-8 text in column 'url' \(byte 0xff\)"):
        read_records(tmp_path / "bin.csv")
    (tmp_path / "d.parquet").write_text("x")
    with pytest.raises(DataError, match=r"unknown dataset format '\.parquet'"):
        read_records(tmp_path / "d.parquet")


TYPED_CSV = """url,query,annotation,type,seam
a.png,q1,x,behind,1
a.png,q2,y,count,0
a.png,q3,z,,TRUE
a.png,q4,w,where,no
a.png,q5,v,caption,
a.png,q6,u,next_to,maybe
a.png,q7,t,opposite, Yes
"""


def test_csv_type_and_seam_columns_are_kept(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text(TYPED_CSV.replace("a.png,q6,u,next_to,maybe\n", ""))
    recs, log = read_records(tmp_path / "d.csv")
    assert log.ok
    assert [(r.query, r.question_type, r.seam) for r in recs] == [
        ("q1", "behind", True),
        ("q2", "count", False),
        ("q3", None, True),
        ("q4", "where", False),
        ("q5", "caption", None),
        ("q7", "opposite", True),
    ]
    (tmp_path / "plain.csv").write_text("url,query,annotation\na.png,q,x\n")
    plain = read_records(tmp_path / "plain.csv")[0][0]
    assert (plain.question_type, plain.seam) == (None, None)


def test_bad_seam_value_is_a_bad_row_named_and_counted(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text(TYPED_CSV)
    with pytest.raises(DataError, match=r"d\.csv:7: bad seam: 'maybe' is not one of 1/0/true/false/yes/no"):
        read_records(tmp_path / "d.csv", policy="error")
    recs, log = read_records(tmp_path / "d.csv", policy="skip")
    assert len(recs) == 6 and [(b.line, b.kind) for b in log.rows] == [(7, "bad seam")]
    assert log.summary()["by_reason"] == {"bad seam": 1}
    # an image-only read (stage 1) does not read the text columns
    assert len(read_records(tmp_path / "d.csv", image_only=True)[0]) == 1


def test_jsonl_turns_carry_type_and_seam(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 200, 100)
    row = {
        "images": ["a.png"],
        "width": 200,
        "height": 100,
        "summary": "A room.",
        "objects": [
            {"bbox_2d": [190, 10, 10, 50], "desc": "red door"},  # wraps across the seam
            {"bbox_2d": [20, 10, 60, 50], "desc": "blue door"},
            {"quad": [0, 0, 100, 0, 100, 50, 0, 50], "desc": "sign"},
        ],
        "qa": [
            {"query": "What is behind you?", "answer": "a door", "type": "behind", "seam": True},
            {"query": "How many?", "answer": "two", "seam": "0"},
            {"query": "Plain?", "answer": "yes"},
        ],
    }
    bad = {**row, "qa": [{"query": "q", "answer": "a", "seam": "sometimes"}]}
    (tmp_path / "d.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(bad) + "\n")
    recs, log = read_records(tmp_path / "d.jsonl", policy="skip")
    assert [(r.query, r.question_type, r.seam) for r in recs] == [
        ("Describe the panorama.", "caption", None),
        ("What is behind you?", "behind", True),
        ("How many?", None, False),
        ("Plain?", None, None),
        ("Locate the red door.", "grounding", True),
        ("Locate the blue door.", "grounding", False),
        ("Locate the sign.", "grounding", None),
    ]
    assert [(b.line, b.kind) for b in log.rows] == [(2, "bad seam")]
    assert "qa[0].seam 'sometimes' is not one of" in log.rows[0].reason


def test_synth_files_read_back_with_their_types_and_seam_flags(tmp_path: Path) -> None:
    from cora.data.dataset import group_references
    from cora.data.synth import SynthPano, needs_seam, question_type, write_synth_dataset

    write_synth_dataset(tmp_path, 4, seed=5, width=64, height=32, workers=1)
    scenes = {f"{i:05d}.png": SynthPano(4, seed=5).scene(i) for i in range(4)}
    csv_recs, _ = read_records(tmp_path / "train.csv")
    jsonl_recs, _ = read_records(tmp_path / "train.jsonl", jsonl_tasks=("summary", "qa"))
    for rec in csv_recs + jsonl_recs:
        assert rec.question_type == question_type(rec.query)
    jsonl_captions = [r for r in jsonl_recs if r.question_type == "caption"]
    assert jsonl_captions and all(r.seam is None for r in jsonl_captions)  # a JSONL summary has no seam flag
    for rec in csv_recs + [r for r in jsonl_recs if r.question_type != "caption"]:
        assert rec.seam is needs_seam(scenes[Path(rec.image).name], rec.query, rec.answer)
    assert {r.seam for r in csv_recs} == {True, False}
    grouped = group_references(csv_recs)
    assert [(r.question_type, r.seam) for r, _ in grouped] == [(r.question_type, r.seam) for r in csv_recs]
