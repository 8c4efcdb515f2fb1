"""``cora data fetch``: a URL dataset made local against a loopback server with good images, a 404, a slow URL,
an HTML page, a 429 with Retry-After, an endless body; resumable; exit codes 0/1/2."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cora.cli.main import main
from cora.data.download import FAILURES_NAME, FetchError, _in_threads, fetch_dataset
from cora.data.readers import read_records
from cora.data.records import DataError
from cora.processors.image_io import decode_image

LIMIT = 64 * 1024  # the size limit the tests use; the good images are far below it


def _encoded(fmt: str, value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 32, 3), value, np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


class _Site:
    """What the server answers, and what it saw: hits and hit times per path, bytes sent on the endless URL."""

    def __init__(self) -> None:
        self.pages = {"/a.png": _encoded("PNG", 10), "/b.jpg": _encoded("JPEG", 200), "/busy.png": _encoded("PNG", 99)}
        self.hits: dict[str, list[float]] = {}
        self.endless_sent = 0
        self.lock = threading.Lock()

    def count(self, path: str) -> int:
        return len(self.hits.get(path, []))


def _handler(site: _Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with site.lock:
                site.hits.setdefault(self.path, []).append(time.monotonic())
                first = len(site.hits[self.path]) == 1
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: expected
                self._answer(first)

        def _answer(self, first: bool) -> None:
            if self.path == "/slow.png":
                time.sleep(1.0)  # longer than the tests' timeout
            if self.path == "/busy.png" and first:
                return self._send(429, b"slow down", {"Retry-After": "1"})
            if self.path == "/page.jpg":
                return self._send(200, b"<html>a login page</html>", {"Content-Type": "text/html"})
            if self.path == "/endless.png":
                return self._endless()
            if self.path in site.pages:
                return self._send(200, site.pages[self.path], {})
            return self._send(404, b"not found", {})

        def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _endless(self) -> None:
            # No Content-Length and no end (capped): only a client that counts while reading gets out early.
            self.send_response(200)
            self.end_headers()
            chunk = b"\x89PNG" + bytes(65532)
            while site.endless_sent < 256 * 2**20:
                self.wfile.write(chunk)
                site.endless_sent += len(chunk)

        def log_message(self, *args) -> None:
            return None

    return Handler


@pytest.fixture
def server(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy
    site = _Site()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", site
    httpd.shutdown()
    httpd.server_close()


def _write(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter).writerows([["url", "query", "annotation"], *rows])
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _fast(**kwargs) -> dict:
    return {"workers": 4, "retries": 1, "timeout_s": 0.3, "max_bytes": LIMIT, "backoff_s": 0.01, **kwargs}


def test_fetch_keeps_only_decodable_images_and_names_each_failure(server, tmp_path: Path) -> None:
    base, site = server
    (tmp_path / "src").mkdir()
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(tmp_path / "src" / "local.png")
    bad = ["missing.png", "slow.png", "page.jpg", "endless.png"]
    source = _write(
        tmp_path / "src" / "data.csv",
        [[f"{base}/a.png", "q1", "a1"], [f"{base}/b.jpg", "q2", "a2"], [f"{base}/a.png", "q3", "a3"]]
        + [[f"{base}/busy.png", "q4", "a4"], ["local.png", "q5", "a5"]]
        + [[f"{base}/{name}", f"bad {name}", "x"] for name in bad],
    )
    out = tmp_path / "out"
    report = fetch_dataset(source, out, **_fast())

    assert (report.urls, report.fetched, report.present, report.local) == (7, 3, 0, 1)
    reasons = {f.url.rsplit("/", 1)[1]: f.reason for f in report.failures}
    assert reasons == {
        "missing.png": "http 404",
        "slow.png": "timeout",
        "page.jpg": "not an image",
        "endless.png": "too large",
    }
    images = sorted((out / "images").iterdir())
    assert len(images) == 3 and all(decode_image(p.read_bytes()).shape == (16, 32, 3) for p in images)

    rows = _read(out / "data.csv")  # exactly the good rows, pointing at local files
    assert [r["query"] for r in rows] == ["q1", "q2", "q3", "q4", "q5"]
    assert rows[0]["url"] == rows[2]["url"] and rows[0]["url"].startswith("images/")
    assert rows[4]["url"] == "../src/local.png"  # re-relativised: still the same file from out/
    records, log = read_records(out / "data.csv")
    assert len(records) == 5 and not log.rows
    assert all(Path(r.images[0]).is_file() for r in records)

    failures = {r["url"].rsplit("/", 1)[1]: r for r in _read(out / FAILURES_NAME)}
    assert {k: v["reason"] for k, v in failures.items()} == reasons
    assert failures["missing.png"]["lines"] == "7" and "404" in failures["missing.png"]["detail"]
    assert failures["page.jpg"]["detail"].startswith("text/html, 25 bytes: UnidentifiedImageError")

    assert site.count("/a.png") == 1  # two rows, one download
    assert site.count("/missing.png") == 1  # a 404 is not retried
    assert site.count("/slow.png") == 2  # a timeout is (retries=1)
    busy = site.hits["/busy.png"]
    assert len(busy) == 2 and busy[1] - busy[0] >= 0.9  # waited for Retry-After: 1, not the 0.01 s backoff
    assert site.endless_sent < 64 * 2**20  # refused while reading, long before the server's 256 MiB cap


def test_cli_rc_1_with_failures_and_a_rerun_downloads_only_what_is_missing(server, tmp_path: Path, capsys) -> None:
    base, site = server
    source = _write(tmp_path / "data.tsv", [[f"{base}/a.png", "q", "a"], [f"{base}/b.jpg", "q", "a"]], "\t")
    with open(source, "a", encoding="utf-8") as handle:
        handle.write(f"{base}/gone.png\tq\ta\n")
    argv = ["data", "fetch", str(source), "--out", str(tmp_path / "out"), "--retries", "0", "--timeout", "2"]
    assert main(argv) == 1
    shown = capsys.readouterr().out
    assert "fetched: 2" in shown and "failed: 1 (http 404: 1)" in shown and "gone.png" in shown
    assert len(_read(tmp_path / "out" / "data.csv")) == 2  # a .tsv input becomes a .csv

    # A killed run leaves good files and maybe a junk one put there by hand: the rerun keeps the good,
    # replaces the junk, and tries the failed URL again.
    junk = next(p for p in (tmp_path / "out" / "images").iterdir() if p.suffix == ".jpg")
    junk.write_bytes(b"<html>oops</html>")
    stale = junk.parent / f".{junk.name}.abc123.tmp"  # what a kill -9 during a write leaves
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert main(argv) == 1
    assert not stale.exists()
    shown = capsys.readouterr().out
    assert "fetched: 1" in shown and "already present: 1" in shown
    assert (site.count("/a.png"), site.count("/b.jpg"), site.count("/gone.png")) == (1, 2, 2)
    assert decode_image(junk.read_bytes()).shape == (16, 32, 3)


def test_cli_rc_0_when_everything_is_fetched(server, tmp_path: Path, capsys) -> None:
    base, site = server
    source = _write(tmp_path / "train.csv", [[f"{base}/a.png", "q", "a"], [f"{base}/busy.png", "q", "a"]])
    argv = ["data", "fetch", str(source), "--out", str(tmp_path / "out"), "--timeout", "2"]
    assert main(argv) == 0
    assert "OK" in capsys.readouterr().out
    assert _read(tmp_path / "out" / FAILURES_NAME) == []
    assert main(argv) == 0  # a rerun: nothing to download
    assert "fetched: 0 (0.0 MiB); already present: 2" in capsys.readouterr().out
    assert site.count("/a.png") == 1
    records, _ = read_records(tmp_path / "out" / "train.csv")
    assert len(records) == 2


def test_cli_bad_input_is_rc_2_with_one_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "fetch", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.csv: dataset file not found" in err
    (tmp_path / "x.csv").write_text("image_path,query\na.png,q\n")
    assert main(["data", "fetch", str(tmp_path / "x.csv"), "--out", str(tmp_path / "out")]) == 2
    assert "missing column 'url' or 'image'" in capsys.readouterr().err
    assert main(["data", "fetch", str(tmp_path / "x.csv"), "--out", str(tmp_path), "--workers", "0"]) == 2


def test_output_never_overwrites_the_input(tmp_path: Path) -> None:
    source = _write(tmp_path / "data.csv", [["a.png", "q", "a"]])
    with pytest.raises(DataError, match="would overwrite the input"):
        fetch_dataset(source, tmp_path)


def test_worker_threads_hand_back_failures_and_reraise_bugs() -> None:
    def work(item: str) -> int | None:
        if item == "bad":
            raise FetchError("http 404", "404 Not Found")
        if item == "bug":
            raise RuntimeError("a bug must not pass as a failed URL")
        return len(item)

    results = dict(_in_threads(["ab", "bad", "abc"], 2, work, threading.Event()))
    assert results["ab"] == 2 and results["abc"] == 3 and results["bad"].reason == "http 404"
    with pytest.raises(RuntimeError, match="a bug"):
        list(_in_threads(["ab", "bug"], 2, work, threading.Event()))
