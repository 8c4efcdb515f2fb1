"""URL images: cached only once they decode as images; a failing URL is not fetched again on every draw."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from cora.data import fetch
from cora.data.records import DataError


@pytest.fixture
def server():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(buffer, format="PNG")
    pages = {"/pano.png": (200, buffer.getvalue()), "/page.jpg": (200, b"<html>a login page</html>")}
    hits: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] = hits.get(self.path, 0) + 1
            code, body = pages.get(self.path, (404, b"not found"))
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    fetch.forget_failures()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_a_page_that_is_not_an_image_is_refused_and_never_cached(server, tmp_path):
    base, _ = server
    with pytest.raises(DataError, match=r"page\.jpg: not an image"):
        fetch.fetch_url(f"{base}/page.jpg", tmp_path)
    assert not fetch.cache_path(f"{base}/page.jpg", tmp_path).exists()
    assert fetch.fetch_url(f"{base}/pano.png", tmp_path).is_file()  # a real image is cached


def test_a_failing_url_is_fetched_once_per_process(server, tmp_path):
    base, hits = server
    for _ in range(3):
        with pytest.raises(DataError, match="missing.png"):
            fetch.fetch_url(f"{base}/missing.png", tmp_path)
    assert hits["/missing.png"] == 1
    fetch.fetch_url(f"{base}/pano.png", tmp_path)
    fetch.fetch_url(f"{base}/pano.png", tmp_path)
    assert hits["/pano.png"] == 1  # the cache answers the second time
