"""One undecodable byte is one bad row, named and counted — never a traceback, never the whole file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cora.data.readers import read_records
from cora.data.records import DataError
from cora.data.validate import format_report, validate_file


@pytest.fixture
def folder(tmp_path):
    Image.fromarray((np.random.default_rng(0).random((32, 64, 3)) * 255).astype("uint8")).save(tmp_path / "p.png")
    return tmp_path


def test_a_non_utf8_csv_row_is_one_counted_bad_row(folder):
    path = folder / "data.csv"
    path.write_bytes(b"url,query,annotation\np.png,q1,a1\np.png,caf\xe9,a2\np.png,q3,a3\n")
    records, log = read_records(path, policy="skip")
    assert [r.query for r in records] == ["q1", "q3"]
    assert [(b.line, b.reason) for b in log.rows] == [(3, "not UTF-8 text in column 'query' (byte 0xe9)")]
    with pytest.raises(DataError, match=rf"{path}:3: not UTF-8 text in column 'query'"):
        read_records(path, policy="error")


def test_a_non_utf8_jsonl_line_is_one_counted_bad_row(folder):
    path = folder / "data.jsonl"
    good = b'{"images": ["p.png"], "width": 64, "height": 32, "summary": "a scene"}'
    path.write_bytes(good + b"\n" + good.replace(b"a scene", b"caf\xe9") + b"\n" + good + b"\n")
    records, log = read_records(path, policy="skip")
    assert len(records) == 2 and [(b.line, b.reason) for b in log.rows] == [(2, "not UTF-8 text (byte 0xe9)")]


def test_validate_reports_bad_bytes_instead_of_crashing(folder):
    path = folder / "data.csv"
    path.write_bytes(b"url,query,annotation\np.png,q1,a1\np.png,caf\xe9,a2\n")
    report = validate_file(path)
    assert report.records == 1 and len(report.bad_rows) == 1
    assert "bad row" in format_report(report) and "not UTF-8" in format_report(report)


def test_validate_counts_rows_whose_image_does_not_decode_or_fetch_as_bad_rows(folder):
    (folder / "p.jpg").write_bytes((folder / "p.png").read_bytes())  # a PNG with a .jpg name still decodes
    good = (folder / "p.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    path = folder / "data.csv"
    path.write_bytes(
        b"url,query,annotation\np.png,q1,a1\ncut.png,q2,a2\nhttp://127.0.0.1:9/x.png,q3,a3\nmissing.png,q4,a4\n"
        b"p.jpg,q5,a5\n"
    )
    report = validate_file(path, cache_dir=folder / "cache")
    assert report.records == 2  # p.png and p.jpg
    assert [b.line for b in report.bad_rows] == [3, 4, 5]  # each bad row once, with its line
    assert "examples: 2 usable; bad rows: 3" in format_report(report)
