"""One pipeline for sync and async handlers (issue 13).

Every test here runs once with a sync handler and once with an ``async def``
one: where the handler runs is the only difference the worker may show. Each
test counts the ack and nack calls relay makes on every delivery (through
``CountingTransport``), so a message settled twice, or never, shows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from relay import MiddlewareChain, Worker, sub
from relay.contrib.retry import RetryMiddleware
from relay.subscription import Subscription
from relay.transports.base import FlowControl, MessageCallback, ReceivedMessage, Stream
from relay.transports.memory import MemoryMessage, MemoryTransport

from .helpers import Recorder, settings, wait_for

KINDS = ["sync", "async"]


class Counted(ReceivedMessage):
    """A delivered message that records each settle call relay makes on it."""

    __slots__ = (
        "_inner", "attributes", "calls", "data", "delivery_attempt", "message_id",
        "ordering_key", "publish_time",
    )

    def __init__(self, inner: ReceivedMessage, calls: list[str]) -> None:
        self._inner = inner
        self.calls = calls
        self.data = inner.data
        self.attributes = inner.attributes
        self.message_id = inner.message_id
        self.publish_time = inner.publish_time
        self.delivery_attempt = inner.delivery_attempt
        self.ordering_key = inner.ordering_key

    def ack(self) -> None:
        self.calls.append("ack")
        self._inner.ack()

    def nack(self) -> None:
        self.calls.append("nack")
        self._inner.nack()

    def ack_with_response(self) -> Future[None]:
        self.calls.append("ack")
        return self._inner.ack_with_response()


class CountingTransport(MemoryTransport):
    """The memory transport, recording settle calls per delivery ("<id>#<attempt>")
    and anything the worker's callback raises into the transport's thread."""

    def __init__(self) -> None:
        super().__init__(redelivery_delay=60)  # no redelivery during a test
        self.settles: dict[str, list[str]] = defaultdict(list)
        self.callback_errors: list[BaseException] = []

    def subscribe(
        self, subscription: str, on_message: MessageCallback, flow_control: FlowControl
    ) -> Stream:
        def counted(received: ReceivedMessage) -> None:
            key = f"{received.message_id}#{received.delivery_attempt}"
            try:
                on_message(Counted(received, self.settles[key]))
            except BaseException as exc:
                self.callback_errors.append(exc)
                raise

        return super().subscribe(subscription, counted, flow_control)


def handler(
    kind: str, body: Callable[[], Any], stuck: threading.Event | None = None
) -> Subscription:
    """A sync or async handler on "orders" that calls ``body()``; with ``stuck``,
    it first waits (without blocking an event loop) until that event is set."""
    if kind == "sync":

        def sync_handler(data: Any, **attrs: Any) -> Any:
            if stuck is not None:
                stuck.wait(10)
            return body()

        return sub(topic="orders")(sync_handler)

    async def async_handler(data: Any, **attrs: Any) -> Any:
        while stuck is not None and not stuck.is_set():
            await asyncio.sleep(0.01)
        return body()

    return sub(topic="orders")(async_handler)


def worker_for(
    handle: Subscription, *middleware: Any, **kw: Any
) -> tuple[Worker, CountingTransport]:
    transport = CountingTransport()
    worker = Worker(
        [handle], settings=settings(**kw), transport=transport,
        middleware=MiddlewareChain(middleware),
    )
    return worker, transport


def publish(transport: MemoryTransport, n: int = 1) -> None:
    for i in range(n):
        transport.publish("orders", str(i).encode(), {}).result(1)


# --------------------------------------------------------------- (a) retries
@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_ends_an_in_process_retry_backoff_at_once(kind: str) -> None:
    """The ack policy's "waiting out an in-process retry backoff: the wait ends at
    once and the message is nacked", whatever kind of handler."""
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise ConnectionError("down")

    rec = Recorder()
    retry = RetryMiddleware(max_retries=5, min_backoff=30, max_backoff=30, jitter=False)
    worker, transport = worker_for(handler(kind, fail), rec, retry)
    worker.start()
    publish(transport)
    wait_for(lambda: rec.hooks("post_process_message_failure"))
    begun = time.monotonic()
    assert worker.stop(timeout=2) is True  # not a drain timeout: the backoff ended
    assert time.monotonic() - begun < 1.5
    assert calls == [1]
    assert dict(transport.settles) == {"1#1": ["nack"]}
    [(_, outcome)] = rec.hooks("post_process_message")
    assert isinstance(outcome.exception, ConnectionError)
    assert outcome.retry_in is None  # no retry is coming


# ------------------------------------------------------- (b) the stop decision
@pytest.mark.parametrize("kind", KINDS)
def test_a_message_arriving_as_the_stop_begins_is_refused_or_drained_never_lost(
    kind: str,
) -> None:
    """The transport's thread is paused for 0.5 s right after the worker has read
    its stop flag for a new message; stop() runs meanwhile. The message must be
    either refused (nacked at once, no hooks) or taken in and drained by this
    stop(); it must not be taken in after stop() decided what was in flight."""

    ran: list[int] = []

    def body() -> None:
        time.sleep(0.1)  # so a message handled after stop() returned would show
        ran.append(1)

    rec = Recorder()
    handle = handler(kind, body)
    worker, transport = worker_for(handle, rec)
    stopping = worker._stopping
    real_is_set = stopping.is_set
    checked = threading.Event()

    def is_set_then_pause() -> bool:
        answer = real_is_set()
        if threading.current_thread().name.startswith("relay-memory") and not checked.is_set():
            checked.set()
            time.sleep(0.5)  # the transport's thread is descheduled here
        return answer

    stopping.is_set = is_set_then_pause  # type: ignore[method-assign]
    worker.start()
    publish(transport)
    assert checked.wait(5)
    assert worker.stop(timeout=5) is True
    hooks_at_return = len(rec.hooks("post_process_message"))
    time.sleep(0.3)
    assert transport.callback_errors == []
    stats = transport.stats("orders")
    assert stats["expired"] == 0, "relay left the message to lapse"
    assert dict(transport.settles) in ({"1#1": ["nack"]}, {"1#1": ["ack"]})
    if transport.settles["1#1"] == ["ack"]:  # taken in: handled before stop() returned
        assert ran == [1] and hooks_at_return == 1
    else:  # refused: no hooks
        assert ran == [] and rec.hooks("pre_process_message") == []


# ---------------------------------------------------- (c) one in-flight record
@pytest.mark.parametrize("kind", KINDS)
def test_after_a_drain_timeout_nothing_is_left_in_flight_and_late_settles_are_not_sent(
    kind: str,
) -> None:
    """One handler stuck past the drain timeout, two messages queued behind it.
    At the deadline all three are given back; afterwards the worker holds
    nothing, the stuck handler's hooks close (when it returns, or when its task
    is cancelled), and its own ack is not sent on top of the drain's nack."""
    release = threading.Event()
    rec = Recorder()
    worker, transport = worker_for(handler(kind, lambda: "late", stuck=release), rec,
                                   concurrency=1)
    worker.start()
    publish(transport, 3)
    wait_for(lambda: len(rec.hooks("pre_process_message")) == 1)
    wait_for(lambda: worker.status()["inflight"] == 3)
    assert worker.stop(timeout=0.2) is False
    release.set()
    wait_for(lambda: rec.hooks("post_process_message"), what="the stuck handler's hooks")
    time.sleep(0.1)
    assert worker.status()["inflight"] == 0
    assert transport.settles["1#1"] == ["nack"]  # the late ack is not sent
    assert len(rec.hooks("pre_process_message")) == 1  # the queued two never started


# ------------------------------------------- (d) queued messages at a deadline
@pytest.mark.parametrize("kind", KINDS)
def test_queued_messages_are_nacked_exactly_once_at_the_drain_deadline(kind: str) -> None:
    release = threading.Event()
    rec = Recorder()
    worker, transport = worker_for(handler(kind, lambda: None, stuck=release), rec,
                                   concurrency=1)
    worker.start()
    publish(transport, 3)
    wait_for(lambda: len(rec.hooks("pre_process_message")) == 1)
    wait_for(lambda: worker.status()["inflight"] == 3)
    try:
        assert worker.stop(timeout=0.2) is False
        assert dict(transport.settles) == {f"{i}#1": ["nack"] for i in (1, 2, 3)}
        assert transport.stats("orders")["nacked"] == 3
    finally:
        release.set()


# ------------------------------------------------------------ the one pipeline
@pytest.mark.parametrize("kind", KINDS)
def test_a_message_arriving_after_the_stop_is_nacked_at_once_without_hooks(kind: str) -> None:
    rec = Recorder()
    worker, transport = worker_for(handler(kind, lambda: None), rec)
    worker.start()
    worker.stop()
    late = transport.publish("orders", b"{}", {}).result(1)
    message = MemoryMessage(transport._records[late])
    transport.streams[0]._on_message(message)  # as if the stream still delivered
    assert message.settled == "nack"
    assert rec.hooks("pre_process_message") == []


def hook_names(rec: Recorder) -> list[str]:
    return [hook for hook, _ in rec.calls if "process" in hook]


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("success", ["pre_process_message", "post_process_message_success",
                     "post_process_message"]),
        ("retried", ["pre_process_message", "post_process_message_failure",
                     "post_process_message_success", "post_process_message"]),
        ("skipped", ["pre_process_message", "post_process_message"]),
        ("unrecoverable", ["pre_process_message", "post_process_message_failure",
                           "post_process_message"]),
    ],
)
def test_sync_and_async_handlers_go_through_the_same_steps(
    scenario: str, expected: list[str]
) -> None:
    from relay import SkipMessage, UnrecoverableError

    seen: dict[str, tuple[list[str], list[str], dict[str, int]]] = {}
    for kind in KINDS:
        calls: list[int] = []

        def body(calls: list[int] = calls) -> str:
            calls.append(1)
            if scenario == "retried" and len(calls) == 1:
                raise TimeoutError("once")
            if scenario == "skipped":
                raise SkipMessage("not for me")
            if scenario == "unrecoverable":
                raise UnrecoverableError("never")
            return "ok"

        rec = Recorder()
        retry = RetryMiddleware(max_retries=2, min_backoff=0.01, max_backoff=0.01)
        worker, transport = worker_for(handler(kind, body), rec, retry)
        with worker:
            publish(transport)
            wait_for(lambda rec=rec: rec.hooks("post_process_message"))
        stats = transport.stats("orders")
        seen[kind] = (hook_names(rec), transport.settles["1#1"],
                      {k: stats[k] for k in ("acked", "nacked")})
    assert seen["sync"] == seen["async"]
    assert seen["sync"][0] == expected
    assert seen["sync"][1] == ["ack"]
