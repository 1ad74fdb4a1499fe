"""A loopback TCP proxy that a test can cut and restore: a network partition.

``TcpProxy(upstream)`` listens on a free loopback port and forwards every
connection to ``upstream`` (``"127.0.0.1:8085"``), one thread per direction.

* ``cut()`` closes every open connection (both sides see the connection end)
  and, until ``restore()``, accepts new connections only to reset them at once:
  a client sees "connection reset", exactly as if the server were unreachable.
  The listening socket stays open, so the port cannot be taken by someone else
  meanwhile and ``restore()`` needs no re-bind.
* ``restore()`` forwards new connections again; nothing is replayed.

Counters (``stats()``) say what went through, for assertions and debugging.
Only loopback addresses are accepted, on both sides.

Not covered: a silent partition (packets dropped, no FIN or RST), where a
client only notices through its own timeouts or keepalives.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ProxyStats:
    connections: int  # accepted and forwarded
    refused: int  # accepted during a cut and reset at once
    open: int  # forwarded connections open right now
    bytes_up: int  # client -> upstream
    bytes_down: int  # upstream -> client
    cuts: int


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if host not in LOOPBACK:
        raise ValueError(f"TcpProxy only forwards to loopback, not {address!r}")
    return host, int(port)


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._closed = False
        self._pumps = 2
        self._lock = threading.Lock()

    def pump_done(self) -> None:
        """The last of the two pump threads closes both sockets (never one in use)."""
        with self._lock:
            self._pumps -= 1
            last = self._pumps == 0
        if last:
            self.client.close()
            self.upstream.close()

    def shutdown(self) -> None:
        """Wake both pump threads (their recv returns); each closes its socket pair."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class TcpProxy:
    """See the module docstring. Use as a context manager, or ``start()``/``close()``."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        if host not in LOOPBACK:
            raise ValueError(f"TcpProxy only listens on loopback, not {host!r}")
        self.upstream = _split(upstream)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._conns: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._cut = False
        self._closed = threading.Event()
        self._connections = self._refused = self._up = self._down = self._cuts = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ control
    def start(self) -> TcpProxy:
        thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def cut(self) -> None:
        """Close every open connection and reset new ones until ``restore()``."""
        with self._lock:
            self._cut = True
            self._cuts += 1
            conns = list(self._conns)
        for conn in conns:
            conn.shutdown()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    @property
    def is_cut(self) -> bool:
        return self._cut

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                self._connections, self._refused, len(self._conns), self._up, self._down,
                self._cuts,
            )

    def close(self) -> None:
        self._closed.set()
        self.cut()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ threads
    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                cut = self._cut or self._closed.is_set()
                if cut:
                    self._refused += 1
            if cut:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(client, upstream)
            with self._lock:
                if self._cut:  # cut while we were connecting upstream
                    self._refused += 1
                    _reset(client)
                    upstream.close()
                    continue
                self._conns.add(conn)
                self._connections += 1
            threading.Thread(
                target=self._pump, args=(conn, client, upstream, True), daemon=True,
                name="proxy-up",
            ).start()
            threading.Thread(
                target=self._pump, args=(conn, upstream, client, False), daemon=True,
                name="proxy-down",
            ).start()

    def _pump(
        self, conn: _Connection, src: socket.socket, dst: socket.socket, up: bool
    ) -> None:
        try:
            while True:
                try:
                    chunk = src.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                try:
                    dst.sendall(chunk)
                except OSError:
                    break
                with self._lock:
                    if up:
                        self._up += len(chunk)
                    else:
                        self._down += len(chunk)
        finally:
            # Either direction ending ends the connection: gRPC never half-closes.
            conn.shutdown()
            with self._lock:
                self._conns.discard(conn)
            conn.pump_done()
