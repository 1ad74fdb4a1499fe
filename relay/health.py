"""HTTP health probes for a worker: ``/livez`` and ``/readyz``, standard library only.

``HealthServer(worker, host=..., port=..., failure_threshold=...)`` serves, on a
daemon thread, two read-only views of ``worker.status()``:

* ``GET /livez``: 200 while the worker is alive: before it starts (provisioning
  included), while it drains after ``stop()`` began, and while it runs with its
  supervisor thread running and no subscription's stream failing or
  disconnected for more than ``failure_threshold`` seconds. 503 otherwise
  (including once ``stop()`` has closed every stream): restarting the process
  is the remedy.
* ``GET /readyz``: 200 once provisioning has finished, the worker has started
  and is not stopping, and every subscription's stream is open, connected and
  not failing (a streaming pull that keeps ending with an error the client
  retries by itself, such as ``RESOURCE_EXHAUSTED``, is ``failing``; the reason
  quotes the error). 503 otherwise: the worker is not consuming (yet, or right
  now).

Both answer ``HEAD`` too, and every body is a JSON object: ``probe``, ``ok``,
``reasons`` (why it is not ok, empty when it is) and the worker's status
(``started``, ``stopping``, ``provisioned``, ``supervisor_alive``, ``inflight``
and ``subscriptions``, each with ``name``, ``topic``, ``state``, ``failures``,
``last_error`` and ``unhealthy_for``). Any other path is a 404.

A probe only reads ``worker.status()``: it takes no lock the worker holds, each
request runs on its own daemon thread, and an error while answering is logged
and answered with a 503, never raised into the worker.

``read_probe(url, probe)`` reads another process's probe: how the supervisor of
``relay-cli run --processes N`` (``relay.processes``) follows its workers, each
serving its own probes on a loopback port, and serves their aggregate through
a ``HealthServer`` subclass.
"""

from __future__ import annotations

import http.client
import logging
import socket
import socketserver
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from relay.errors import RelayError

__all__ = ["HealthServer", "StatusSource", "liveness", "read_probe", "readiness"]

logger = logging.getLogger("relay.health")

#: Seconds a probe connection may stay silent before its thread gives up on it.
REQUEST_TIMEOUT = 10.0


class StatusSource(Protocol):
    """What the server probes: ``relay.Worker``, or anything with the same ``status()``."""

    def status(self) -> dict[str, Any]: ...


def liveness(status: Mapping[str, Any], failure_threshold: float) -> list[str]:
    """Why a worker with this ``status()`` is not live; an empty list when it is."""
    subscriptions = list(status.get("subscriptions", ()))
    if status.get("stopping", False):
        # Draining is on purpose: failing now would only cut the drain short.
        # Once every stream is closed, though, nothing is consuming any more.
        if subscriptions and all(s.get("state") == "stopped" for s in subscriptions):
            return ["the worker has stopped"]
        return []
    reasons = []
    if status.get("started", False) and not status.get("supervisor_alive", True):
        reasons.append("the supervisor thread is not running")
    for sub in subscriptions:
        unhealthy_for = sub.get("unhealthy_for")
        if unhealthy_for is not None and unhealthy_for > failure_threshold:
            reasons.append(
                f"subscription {sub.get('name')} has been {sub.get('state')} for "
                f"{unhealthy_for:.0f} s (threshold {failure_threshold:g} s); "
                f"last error: {sub.get('last_error')}"
            )
    return reasons


def readiness(status: Mapping[str, Any]) -> list[str]:
    """Why a worker with this ``status()`` is not ready; an empty list when it is."""
    reasons = []
    if status.get("stopping", False):
        reasons.append("the worker is stopping")
    else:
        if not status.get("provisioned", False):
            reasons.append("provisioning has not finished")
        if not status.get("started", False):
            reasons.append("the worker has not started")
    for sub in status.get("subscriptions", ()):
        state = sub.get("state")
        if state == "failing":
            reasons.append(f"subscription {sub.get('name')} is failing: {sub.get('last_error')}")
        elif state != "open":
            reasons.append(f"subscription {sub.get('name')} is {state}")
    return reasons


def read_probe(url: str, probe: str = "readyz", timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    """GET ``url/probe`` from a ``HealthServer``: the HTTP status and the JSON body.

    ``url`` is ``HealthServer.url`` (``http://HOST:PORT``). No proxy is used.
    Raises ``OSError`` (refused, timed out), ``http.client.HTTPException`` (not
    HTTP) or ``ValueError`` (not a JSON object).
    """
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                            timeout=timeout)
    try:
        connection.request("GET", f"/{probe}")
        response = connection.getresponse()
        body = orjson.loads(response.read())
    finally:
        connection.close()
    if not isinstance(body, dict):
        raise ValueError(f"/{probe} at {url} answered {body!r}, not a JSON object")
    return response.status, body


class _ProbeHandler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = "relay-health"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _not_allowed(self) -> None:
        self.close_connection = True  # any request body is left unread
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET or HEAD"}, True,
                   allow="GET, HEAD")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed

    def _answer(self, *, send_body: bool) -> None:
        path = urlsplit(self.path).path
        probe = path.lstrip("/")
        if probe not in ("livez", "readyz"):
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such probe: {path}; "
                       "use /livez or /readyz"}, send_body)
            return
        try:
            body = self.server.health.check(probe)
        except Exception as exc:  # a probe must answer, whatever the worker does
            logger.warning("answering /%s failed", probe, exc_info=True)
            body = {"probe": probe, "ok": False,
                    "reasons": [f"reading the worker's status failed: {type(exc).__name__}"]}
        code = HTTPStatus.OK if body["ok"] else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(code, body, send_body)

    def _send(
        self, code: HTTPStatus, body: Mapping[str, Any], send_body: bool, allow: str = ""
    ) -> None:
        payload = orjson.dumps(body, default=str) + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if send_body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes arrive every few seconds: keep them out of the operator's INFO logs.
        logger.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], health: HealthServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.health = health
        super().__init__(address, _ProbeHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can hang on a
        # machine without working DNS; a probe server has no use for it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("health probe from %s failed", client_address, exc_info=True)


class HealthServer:
    """Serves ``/livez`` and ``/readyz`` for ``worker`` until ``stop()``.

    ``port=0`` picks a free port; read the actual one from ``.port`` after
    ``start()``. ``failure_threshold`` is how many seconds a subscription's
    stream may stay failing or disconnected before ``/livez`` fails. Use it
    around a worker in your own process::

        worker = relay.Worker(subscriptions)
        with HealthServer(worker, port=8080):
            worker.run_forever()

    Start it before ``worker.setup()`` so ``/livez`` answers during
    provisioning (and ``/readyz`` says 503 until the worker consumes).
    """

    def __init__(
        self,
        worker: StatusSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        failure_threshold: float = 120.0,
    ) -> None:
        if failure_threshold <= 0:
            raise ValueError(f"failure_threshold must be positive, got {failure_threshold!r}")
        self.worker = worker
        self.host = host
        self.failure_threshold = failure_threshold
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, for ``port=0``); needs ``start()``."""
        if self._server is None:
            raise RuntimeError("the health server is not running; call start() first")
        return self._server.server_port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, for messages and clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check(self, probe: str) -> dict[str, Any]:
        """The JSON body of ``/livez`` or ``/readyz``: ``probe``, ``ok``, ``reasons``, status."""
        status = self.worker.status()
        if probe == "livez":
            reasons = liveness(status, self.failure_threshold)
        elif probe == "readyz":
            reasons = readiness(status)
        else:
            raise ValueError(f"unknown probe {probe!r}; expected 'livez' or 'readyz'")
        return {"probe": probe, "ok": not reasons, "reasons": reasons, **status}

    def start(self) -> HealthServer:
        """Bind and serve on a daemon thread. Raises ``RelayError`` if it cannot bind."""
        with self._lock:
            if self._server is not None:
                return self
            try:
                server = _Server((self.host, self._requested_port), self)
            except (OSError, OverflowError) as exc:
                raise RelayError(
                    f"the health server cannot listen on {self.host}:{self._requested_port}: "
                    f"{exc}; choose another HEALTH_HOST/HEALTH_PORT (port 0 picks a free one)"
                ) from exc
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2},
                name="relay-health", daemon=True,
            )
            self._thread.start()
        logger.info("health probes listening on %s (/livez, /readyz)", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(5)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
