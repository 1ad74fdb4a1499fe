"""A local HTTP endpoint for Pub/Sub push subscriptions, on 127.0.0.1.

``PushEndpoint`` is an HTTP/1.1 (keep-alive) server that records every POST it
gets as a ``Request`` (arrival time, path, headers, body, client port) and
answers each with the status ``answer(request)`` returns (204 unless told;
``answer`` may wait first, to hold a push). ``url`` is where to point a
subscription's ``push_endpoint``; ``close()`` stops the server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    at: float  # time.monotonic() when it arrived
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    port: int  # the client's port: one per connection

    def json(self) -> Any:
        return json.loads(self.body)


def fail_first(count: int = 1, status: int = 500) -> Callable[[Request], int]:
    """An ``answer``: ``status`` to the first ``count`` requests, 204 after."""
    answers = iter([status] * count)
    return lambda request: next(answers, 204)


class PushEndpoint:
    """Records POSTs and answers each with ``answer(request)``; served at ``url``
    (``http://127.0.0.1:PORT`` + ``path``)."""

    def __init__(self, answer: Callable[[Request], int] = lambda r: 204,
                 path: str = "/push") -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = Request(time.monotonic(), self.path,
                                  {k.lower(): v for k, v in self.headers.items()}, body,
                                  self.client_address[1])
                with endpoint.lock:
                    endpoint.requests.append(request)
                status = endpoint.answer(request)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self) -> list[Request]:
        """The requests so far, in order of arrival."""
        with self.lock:
            return list(self.requests)

    def bodies(self) -> list[Any]:
        """The JSON bodies of the requests so far."""
        return [request.json() for request in self.got()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
