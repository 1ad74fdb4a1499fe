"""``relay.health``: /livez and /readyz over real HTTP on loopback, on the memory transport."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from relay import MiddlewareChain, RelayError, Worker, sub
from relay.errors import TransportError
from relay.health import HealthServer, liveness, readiness
from relay.transports.base import FlowControl, MessageCallback, Stream
from relay.transports.memory import MemoryTransport

from .helpers import settings, wait_for


class Response:
    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.raw)
        return data


def probe(server: HealthServer, path: str, method: str = "GET") -> Response:
    request = urllib.request.Request(server.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return Response(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.headers, error.read())


def state_of(response: Response, name: str) -> dict[str, Any]:
    [entry] = [s for s in response.body["subscriptions"] if s["name"] == name]
    return entry


class ReportingStream(Stream):
    """A memory stream whose ``failure()`` is what the test sets in ``failing``."""

    def __init__(self, name: str, inner: Stream) -> None:
        self.name = name
        self.inner = inner
        self.failing: str | None = None

    def cancel(self) -> None:
        self.inner.cancel()

    def close(self, timeout: float | None = None) -> None:
        self.inner.close(timeout)

    def done(self) -> bool:
        return self.inner.done()

    def exception(self) -> BaseException | None:
        return self.inner.exception()

    def failure(self) -> str | None:
        return self.failing


class SwitchableTransport(MemoryTransport):
    """A memory transport whose ``subscribe`` fails while ``refuse`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = threading.Event()
        self.reporting: list[ReportingStream] = []

    def subscribe(self, subscription: str, on_message: MessageCallback,
                  flow_control: FlowControl) -> Stream:
        if self.refuse.is_set():
            raise TransportError("broker unreachable (test switch)")
        stream = ReportingStream(
            subscription, super().subscribe(subscription, on_message, flow_control)
        )
        self.reporting.append(stream)
        return stream


@sub(topic="orders")
def on_order(data: Any, **attrs: Any) -> None:
    pass


@sub(topic="photos")
def on_photo(data: Any, **attrs: Any) -> None:
    pass


@pytest.fixture
def transport() -> SwitchableTransport:
    return SwitchableTransport()


@pytest.fixture
def worker(transport: SwitchableTransport) -> Iterator[Worker]:
    w = Worker([on_order, on_photo], settings=settings(), transport=transport,
               middleware=MiddlewareChain([]))
    yield w
    w.stop(timeout=5)


@pytest.fixture
def health(worker: Worker) -> Iterator[HealthServer]:
    with HealthServer(worker, port=0) as server:
        yield server


def test_before_provisioning_livez_is_200_and_readyz_503(health: HealthServer) -> None:
    live = probe(health, "/livez")
    ready = probe(health, "/readyz")

    assert live.status == 200
    assert live.body["ok"] is True and live.body["probe"] == "livez"
    assert ready.status == 503
    assert ready.body["ok"] is False
    assert ready.body["provisioned"] is False
    assert "provisioning has not finished" in ready.body["reasons"]
    assert ready.headers["Content-Type"] == "application/json"


def test_readyz_is_200_once_provisioned_and_every_stream_is_open(
    worker: Worker, health: HealthServer
) -> None:
    worker.setup()
    assert probe(health, "/readyz").status == 503  # provisioned, not consuming yet

    worker.start()
    ready = wait_for(lambda: (r := probe(health, "/readyz")).status == 200 and r)

    assert ready.body["reasons"] == []
    assert ready.body["provisioned"] is True and ready.body["started"] is True
    assert [(s["name"], s["topic"], s["state"]) for s in ready.body["subscriptions"]] == [
        ("orders", "orders", "open"), ("photos", "photos", "open"),
    ]
    assert probe(health, "/livez").status == 200


def test_a_broken_stream_is_not_ready_but_live_until_the_supervisor_reopens_it(
    worker: Worker, transport: SwitchableTransport, health: HealthServer
) -> None:
    worker.start()
    wait_for(lambda: probe(health, "/readyz").status == 200)
    [stream] = [s for s in transport.streams if s._sub.spec.name == "photos"]

    stream.fail(ConnectionError("connection reset by peer"))

    broken = wait_for(lambda: (r := probe(health, "/readyz")).status == 503 and r)
    photos = state_of(broken, "photos")
    assert photos["state"] == "restarting"
    assert "connection reset by peer" in photos["last_error"]
    assert "subscription photos is restarting" in broken.body["reasons"]
    assert state_of(broken, "orders")["state"] == "open"
    assert probe(health, "/livez").status == 200  # far below the 120 s threshold
    # The supervisor reopens the stream (after ~1 s of backoff): ready again.
    wait_for(lambda: probe(health, "/readyz").status == 200, timeout=15)


def test_a_stream_that_keeps_failing_is_not_ready_warned_about_once_and_recovers(
    worker: Worker, transport: SwitchableTransport, health: HealthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker.start()
    wait_for(lambda: probe(health, "/readyz").status == 200)
    [photos] = [s for s in transport.reporting if s.name == "photos"]

    with caplog.at_level(logging.INFO, logger="relay.worker"):
        photos.failing = "RESOURCE_EXHAUSTED: too large (ended with an error 2 time(s) in 9 s)"
        failing = wait_for(lambda: (r := probe(health, "/readyz")).status == 503 and r)
        assert state_of(failing, "photos")["state"] == "failing"
        assert state_of(failing, "photos")["last_error"] == photos.failing
        assert failing.body["reasons"] == [f"subscription photos is failing: {photos.failing}"]
        assert state_of(failing, "orders")["state"] == "open"
        assert probe(health, "/livez").status == 200  # far below the 120 s threshold
        time.sleep(1.0)  # four supervisor rounds: still one warning, not one each
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f"stream for photos keeps failing: {photos.failing}"]

        photos.failing = None
        wait_for(lambda: probe(health, "/readyz").status == 200)
    assert "stream for photos is working again" in caplog.text
    assert state_of(probe(health, "/livez"), "photos")["unhealthy_for"] is None


def test_livez_fails_when_a_stream_stays_broken_past_the_threshold_and_recovers(
    worker: Worker, transport: SwitchableTransport
) -> None:
    worker.start()
    with HealthServer(worker, port=0, failure_threshold=1.5) as health:
        transport.refuse.set()  # every reopen fails from now on
        [stream] = [s for s in transport.streams if s._sub.spec.name == "orders"]
        stream.fail(ConnectionError("link down"))

        dead = wait_for(lambda: (r := probe(health, "/livez")).status == 503 and r, timeout=15)

        assert dead.body["ok"] is False
        [reason] = dead.body["reasons"]
        assert reason.startswith("subscription orders has been restarting for")
        assert "threshold 1.5 s" in reason
        assert state_of(dead, "orders")["unhealthy_for"] > 1.5
        assert state_of(dead, "orders")["failures"] >= 2  # the reopen attempts failed too

        transport.refuse.clear()
        wait_for(lambda: probe(health, "/livez").status == 200, timeout=30)
        assert probe(health, "/readyz").status == 200


def test_while_draining_livez_stays_200_and_after_stop_both_fail() -> None:
    release = threading.Event()
    running = threading.Event()

    @sub(topic="slow")
    def slow(data: Any, **attrs: Any) -> None:
        running.set()
        release.wait(30)

    transport = MemoryTransport()
    w = Worker([slow], settings=settings(), transport=transport, middleware=MiddlewareChain([]))
    with HealthServer(w, port=0) as server:
        w.start()
        transport.publish("slow", b"{}", {}).result(5)
        assert running.wait(10)
        stopper = threading.Thread(target=w.stop, kwargs={"timeout": 30})
        stopper.start()
        try:
            draining = wait_for(lambda: (r := probe(server, "/readyz")).body["stopping"] and r)
            assert draining.status == 503
            assert "the worker is stopping" in draining.body["reasons"]
            assert probe(server, "/livez").status == 200
        finally:
            release.set()
            stopper.join(30)

        stopped = probe(server, "/livez")
        assert stopped.status == 503
        assert stopped.body["reasons"] == ["the worker has stopped"]
        assert probe(server, "/readyz").status == 503


def test_head_unknown_paths_methods_and_query_strings(
    worker: Worker, health: HealthServer
) -> None:
    worker.start()
    wait_for(lambda: probe(health, "/readyz").status == 200)

    head = probe(health, "/readyz", method="HEAD")
    assert head.status == 200 and head.raw == b""
    assert int(head.headers["Content-Length"]) > 0
    assert probe(health, "/livez?verbose=1").status == 200

    missing = probe(health, "/metrics")
    assert missing.status == 404
    assert "/livez" in missing.body["error"]
    assert probe(health, "/readyz/extra").status == 404
    assert probe(health, "/", method="HEAD").status == 404
    posted = probe(health, "/livez", method="POST")
    assert posted.status == 405
    assert posted.headers["Allow"] == "GET, HEAD"


class Broken:
    """A status source that fails, as a worker in a bad state might."""

    def __init__(self) -> None:
        self.calls = 0

    def status(self) -> dict[str, Any]:
        self.calls += 1
        raise RuntimeError("status exploded")


def test_a_failing_status_or_a_silent_client_never_takes_the_server_down() -> None:
    source = Broken()
    with HealthServer(source, port=0) as health:
        silent = socket.create_connection(("127.0.0.1", health.port), timeout=5)
        try:
            for path in ("/livez", "/readyz"):
                answer = probe(health, path)
                assert answer.status == 503
                assert answer.body["ok"] is False
                assert answer.body["reasons"] == [
                    "reading the worker's status failed: RuntimeError"
                ]
        finally:
            silent.close()
        assert source.calls == 2
        assert probe(health, "/nowhere").status == 404


def test_port_0_picks_a_port_that_stop_releases_and_a_taken_port_is_an_error(
    worker: Worker,
) -> None:
    server = HealthServer(worker, port=0).start()
    port = server.port
    assert port > 0
    assert server.start() is server and server.port == port  # idempotent

    with pytest.raises(RelayError, match=f"cannot listen on 127.0.0.1:{port}"):
        HealthServer(worker, port=port).start()

    server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port


def test_liveness_rules_on_status_snapshots() -> None:
    def status(**kw: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"started": True, "stopping": False, "provisioned": True,
                                "supervisor_alive": True, "subscriptions": []}
        return {**base, **kw}

    def subs(*unhealthy: float | None, state: str = "restarting") -> list[dict[str, Any]]:
        return [{"name": f"s{i}", "state": state, "unhealthy_for": u, "last_error": "boom"}
                for i, u in enumerate(unhealthy)]

    assert liveness(status(), 10) == []
    assert liveness(status(started=False, supervisor_alive=False), 10) == []  # not started
    assert liveness(status(supervisor_alive=False), 10) == [
        "the supervisor thread is not running"
    ]
    assert liveness(status(subscriptions=subs(None, 10.0)), 10) == []  # at, not past
    [reason] = liveness(status(subscriptions=subs(None, 10.5, state="connecting")), 10)
    assert reason.startswith("subscription s1 has been connecting for 10 s (threshold 10 s)")
    assert "last error: boom" in reason
    # Draining: live whatever the streams say; stopped: not live.
    assert liveness(status(stopping=True, supervisor_alive=False,
                           subscriptions=subs(99.0)), 10) == []
    assert liveness(status(stopping=True, subscriptions=subs(None, state="stopped")), 10) == [
        "the worker has stopped"
    ]
    assert liveness({}, 10) == []  # an older status() without the new keys


def test_readiness_rules_on_status_snapshots() -> None:
    def status(*states: str, **kw: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"started": True, "stopping": False, "provisioned": True}
        subs = [{"name": f"s{i}", "state": s} for i, s in enumerate(states)]
        return {**base, "subscriptions": subs, **kw}

    assert readiness(status("open", "open")) == []
    assert readiness(status("open", "connecting")) == ["subscription s1 is connecting"]
    failing = status("failing", "open")
    failing["subscriptions"][0]["last_error"] = "RESOURCE_EXHAUSTED: too large"
    assert readiness(failing) == ["subscription s0 is failing: RESOURCE_EXHAUSTED: too large"]
    assert readiness(status("open", provisioned=False)) == ["provisioning has not finished"]
    assert readiness(status("idle", started=False)) == [
        "the worker has not started", "subscription s0 is idle",
    ]
    assert readiness(status("open", stopping=True)) == ["the worker is stopping"]
    assert readiness({"started": True, "subscriptions": []}) == [
        "provisioning has not finished"
    ]
