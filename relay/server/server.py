"""``PubSubServer``: relay's in-memory Pub/Sub, served over gRPC on background threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import grpc

from relay.errors import RelayError
from relay.server.services import Services
from relay.server.state import Broker

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Requests up to Pub/Sub's 10 MB limit must arrive to be refused with its error.
_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    ("grpc.so_reuseport", 0),
)


class ServerError(RelayError):
    """The server could not start."""


class PubSubServer:
    """An in-memory Pub/Sub server for development, tests and benchmarks.

    It serves google-cloud-pubsub (``PUBSUB_EMULATOR_HOST=server.address``) and
    relay's transport: topics, subscriptions, Publish, Pull, StreamingPull,
    Acknowledge, ModifyAckDeadline, push delivery to loopback endpoints (any
    endpoint with ``allow_remote``) and an IAM policy that allows everything.
    Nothing is persisted. ``port=0`` takes a free port. Each streaming pull
    holds a worker thread for its lifetime: ``max_workers`` (1024 by default,
    threads started as needed) bounds the calls served at once, streams
    included; a call beyond it fails at once with RESOURCE_EXHAUSTED rather
    than waiting unserved (128, the old bound, left a worker's 129th stream
    silently idle).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False,
        max_workers: int = 1024,
    ) -> None:
        if host not in LOOPBACK and not allow_remote:
            raise ServerError(
                f"relay's Pub/Sub server listens on loopback only, not {host!r}: it has no "
                "authentication, so anyone who can reach it can read and publish. Pass "
                "allow_remote=True (--allow-remote) to serve other hosts anyway."
            )
        self.host = host
        self.port = port
        self.max_workers = max_workers
        self.allow_remote = allow_remote
        self.broker = Broker()
        self.services: Services | None = None
        self._server: Any = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> PubSubServer:
        with self._lock:
            if self._server is not None:
                return self
            server = grpc.server(
                ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="relay-server"),
                options=_OPTIONS, maximum_concurrent_rpcs=self.max_workers,
            )
            services = Services(self.broker, allow_remote=self.allow_remote)
            server.add_generic_rpc_handlers((services,))
            bind = f"[{self.host}]" if ":" in self.host else self.host
            try:
                port = server.add_insecure_port(f"{bind}:{self.port}")
            except RuntimeError as exc:
                raise ServerError(f"cannot listen on {self.address}: {exc}") from exc
            if not port:
                raise ServerError(f"cannot listen on {self.address}: the port is taken?")
            self.port = port
            self.broker.start()
            server.start()
            self._server = server
            self.services = services
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; open streams end. Idempotent."""
        with self._lock:
            if self._stopped or self._server is None:
                self._stopped = True
                return
            self._stopped = True
            server = self._server
        if self.services is not None:
            self.services.push.stop()
        self.broker.stop()
        server.stop(grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout``); True if it stopped."""
        if self._server is None:
            return True
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> PubSubServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
