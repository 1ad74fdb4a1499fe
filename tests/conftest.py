"""Emulator fixtures for tests/emulator and tests/transports, and nothing else.

``pubsub_emulator`` starts Google's Pub/Sub emulator once per session on a free
loopback port, points ``PUBSUB_EMULATOR_HOST`` (and the project id) at it for
the rest of the session, and stops it by PID at the end. If the emulator cannot
be found or started, every test that needs it FAILS with the reason: tests that
prove Pub/Sub behaviour are never skipped.

``make_pubsub_transport`` builds a ``PubSubTransport`` whose subscriber client
talks to the emulator through a ``WireLog`` (``make_grpc_transport``: relay's
``GrpcTransport`` with an ``AioWireLog``): it records every ack and nack
that reached the emulator. That is how the tests prove an ack was really sent.
A quick "consume again and see nothing" cannot prove it on the emulator: a
message whose ack was lost stays leased to the closed stream and only comes
back 20 to 70 s later (measured), long after a brief re-consume has ended.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from google.cloud import pubsub_v1
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from relay.emulator import Emulator, EmulatorError
from relay.settings import Settings
from relay.transports.pubsub import PubSubTransport

EMULATOR_PROJECT = "relay-tests"

T = TypeVar("T")


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[Emulator]:
    emulator = Emulator()
    try:
        emulator.start()
    except EmulatorError as exc:
        pytest.fail(f"the Pub/Sub emulator could not be started: {exc}", pytrace=False)
    saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID")}
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.address
    os.environ["PUBSUB_PROJECT_ID"] = EMULATOR_PROJECT
    try:
        yield emulator
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        emulator.stop()


class _AckCounts:
    """The acks and nacks the emulator accepted, per subscription short name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acked: Counter[str] = Counter()
        self.nacked: Counter[str] = Counter()

    def _counter(self, method: str, request: Any) -> Counter[str] | None:
        """Where an accepted call of ``method`` counts: acks, nacks, or neither."""
        if method.endswith("/Acknowledge"):
            return self.acked
        if method.endswith("/ModifyAckDeadline") and request.ack_deadline_seconds == 0:
            return self.nacked
        return None

    def _count(self, counter: Counter[str], request: Any) -> None:
        with self._lock:
            counter[request.subscription.rsplit("/", 1)[-1]] += len(request.ack_ids)

    def acks(self, subscription: str) -> int:
        with self._lock:
            return self.acked[subscription]

    def nacks(self, subscription: str) -> int:
        with self._lock:
            return self.nacked[subscription]


class WireLog(_AckCounts, grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts the acks and nacks the emulator accepted, per subscription short name."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        if outcome.exception() is not None:
            return outcome
        counter = self._counter(details.method, request)
        if counter is not None:
            self._count(counter, request)
        return outcome


@pytest.fixture
def make_pubsub_transport(
    pubsub_emulator: Emulator,
) -> Iterator[Callable[..., tuple[PubSubTransport, WireLog]]]:
    """``make_pubsub_transport(**settings)`` -> ``(transport, wire_log)``; closed after."""
    made: list[PubSubTransport] = []

    def make(**settings: Any) -> tuple[PubSubTransport, WireLog]:
        settings.setdefault("gc_project_id", EMULATOR_PROJECT)
        settings.setdefault("middleware", [])
        log = WireLog()
        channel = grpc.intercept_channel(grpc.insecure_channel(pubsub_emulator.address), log)
        subscriber = pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=channel)
        )
        transport = PubSubTransport(Settings.load(**settings), subscriber_client=subscriber)
        made.append(transport)
        return transport, log

    yield make
    for transport in made:
        transport.close()


class AioWireLog(_AckCounts, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """``WireLog`` for ``grpc.aio``: the acks and nacks the emulator accepted."""

    def __init__(self) -> None:
        super().__init__()
        #: Unary calls made, by method name ("Acknowledge", "ModifyAckDeadline", ...).
        self.calls: Counter[str] = Counter()

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        with self._lock:
            self.calls[method.rsplit("/", 1)[-1]] += 1
        counter = self._counter(method, request)
        if counter is None:
            return call
        try:
            await call
        except grpc.aio.AioRpcError:
            return call
        self._count(counter, request)
        return call


@pytest.fixture
def make_grpc_transport(pubsub_emulator: Any) -> Iterator[Callable[..., Any]]:
    """``make_grpc_transport(**settings)`` -> ``(GrpcTransport, AioWireLog)``; closed after."""
    from relay.transports.grpc import GrpcTransport

    made: list[GrpcTransport] = []

    def make(**settings: Any) -> tuple[GrpcTransport, AioWireLog]:
        settings.setdefault("gc_project_id", EMULATOR_PROJECT)
        settings.setdefault("middleware", [])
        log = AioWireLog()
        transport = GrpcTransport(Settings.load(**settings), interceptors=[log])
        made.append(transport)
        return transport, log

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("orders")`` -> ``"orders-1a2b3c4d5e"``: the emulator is shared."""

    def make(base: str) -> str:
        return f"{base}-{uuid.uuid4().hex[:10]}"

    return make


def _wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, what: str = "", interval: float = 0.02
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(predicate, timeout=10, what="...")``: poll against a deadline.

    Returns the predicate's first truthy value; fails the test at the deadline.
    """
    return _wait_for
