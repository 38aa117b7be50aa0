"""A local OpenAI-compatible chat server for tests: `POST .../chat/completions` replies with what
the test's function writes for the request body, `GET .../models` lists one model."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer


@dataclass
class FakeChatServer:
    url: str
    requests: list[tuple[str, dict, str | None]] = field(default_factory=list)
    """(path, JSON body, Authorization header) of every POST, in order."""


@contextmanager
def fake_chat_server(
    reply: Callable[[dict], str], model: str = "local-model"
) -> Iterator[FakeChatServer]:
    served = FakeChatServer("")

    class Handler(BaseHTTPRequestHandler):
        def _send(self, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._send({"data": [{"id": model}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            served.requests.append((self.path, body, self.headers.get("Authorization")))
            self._send({"choices": [{"message": {"content": reply(body)}}]})

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
