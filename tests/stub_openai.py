"""A local OpenAI-compatible HTTP server for tests (judge, teacher): subclasses say what to answer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubChatServer:
    """Serves POSTs on 127.0.0.1 (a free port) in a thread; ``respond`` maps a request to a reply.

    Use as a context manager; ``url`` is the ``.../v1`` base a client is given.
    """

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code, payload = owner.respond(self.path, body, dict(self.headers))
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def respond(self, path: str, body: dict, headers: dict) -> tuple[int, dict]:
        raise NotImplementedError("a stub server says what it answers")

    @staticmethod
    def chat_reply(content: str) -> tuple[int, dict]:
        return 200, {"choices": [{"message": {"role": "assistant", "content": content}}]}

    def __enter__(self) -> StubChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
