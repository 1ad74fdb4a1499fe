"""Ordering keys, leases, in-process retries and exactly-once acks (memory transport)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from relay import AckError, ConfigurationError, MiddlewareChain, Worker, sub
from relay.contrib.retry import RetryMiddleware
from relay.transports.base import FlowControl, SubscriptionSpec
from relay.transports.memory import MemoryMessage, MemoryTransport

from .helpers import Recorder, settings, wait_for


# ------------------------------------------------------------------ ordering
def test_ordered_subscription_hands_out_one_message_per_key_in_order() -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()
    failed_once = threading.Event()

    @sub(topic="orders", enable_message_ordering=True)
    def handle(data: Any, **attrs: Any) -> None:
        time.sleep(0.005)
        if data == {"key": "a", "n": 2} and not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("first try of a2 fails")
        with lock:
            seen.append((data["key"], data["n"]))

    transport = MemoryTransport()
    worker = Worker([handle], settings=settings(concurrency=8), transport=transport,
                    middleware=MiddlewareChain())
    worker.setup()
    for n in range(10):
        for key in ("a", "b"):
            transport.publish("orders", f'{{"key": "{key}", "n": {n}}}'.encode(), {},
                              ordering_key=key).result(1)
    with worker:
        wait_for(lambda: len(seen) == 20)
    for key in ("a", "b"):
        assert [n for k, n in seen if k == key] == list(range(10))
    assert failed_once.is_set()


def test_unordered_subscription_ignores_ordering_keys() -> None:
    transport = MemoryTransport()
    transport.ensure_topic("t-x")
    transport.create_subscription(SubscriptionSpec("s-x", "t-x"))
    for _n in range(3):
        transport.publish("t-x", b"{}", {}, ordering_key="k").result(1)
    got: list[MemoryMessage] = []
    stream = transport.subscribe("s-x", lambda m: got.append(m), FlowControl())  # type: ignore[arg-type]
    wait_for(lambda: len(got) == 3)  # all three at once: no per-key serialisation
    stream.close()


# -------------------------------------------------------------------- leases
def test_an_unsettled_message_is_redelivered_when_its_lease_lapses() -> None:
    transport = MemoryTransport()
    transport.ensure_topic("t-l")
    transport.create_subscription(SubscriptionSpec("s-l", "t-l"))
    transport.publish("t-l", b"{}", {}).result(1)
    got: list[Any] = []
    stream = transport.subscribe(
        "s-l", got.append, FlowControl(max_lease_duration=0.2)
    )
    wait_for(lambda: len(got) == 2)
    first, second = got[:2]
    assert (first.delivery_attempt, second.delivery_attempt) == (1, 2)
    assert first.settled == "expired"
    # The late ack is not applied, and ack_with_response says so.
    with pytest.raises(AckError, match="lease had expired"):
        first.ack_with_response().result(1)
    second.ack()
    stream.close()
    stats = transport.stats("s-l")
    assert stats["acked"] == 1 and stats["expired"] >= 1


def test_a_hung_handler_does_not_stop_the_worker_and_its_message_comes_back() -> None:
    release = threading.Event()
    calls: list[int] = []

    @sub(topic="orders")
    def handle(data: Any, delivery_attempt: int = 0, **attrs: Any) -> None:
        calls.append(delivery_attempt)
        if data.get("hang") and delivery_attempt == 1:
            release.wait(10)

    transport = MemoryTransport(lease_duration=0.3)  # leases lapse fast in this test
    worker = Worker([handle], settings=settings(concurrency=4), transport=transport,
                    middleware=MiddlewareChain())
    with worker:
        transport.publish("orders", b'{"hang": true}', {}).result(1)
        for _ in range(5):
            transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] >= 6)
        release.set()
    assert 2 in calls  # the hung message was delivered again and processed
    assert calls.count(1) == 6


# ------------------------------------------------------------------- retries
def test_retry_middleware_retries_transient_errors_in_place() -> None:
    calls: list[int] = []

    @sub(topic="orders")
    def flaky(data: Any, **attrs: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("database timed out")
        return "ok"

    rec = Recorder()
    retry = RetryMiddleware(max_retries=3, min_backoff=0.01, max_backoff=0.02)
    transport = MemoryTransport()
    with Worker([flaky], settings=settings(), transport=transport,
                middleware=MiddlewareChain([rec, retry])):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert len(calls) == 3
    assert transport.stats("orders")["nacked"] == 0
    assert len(rec.hooks("post_process_message_failure")) == 2
    [(message, outcome)] = rec.hooks("post_process_message")
    assert message.retries == 2 and outcome.result == "ok"


def test_retry_middleware_gives_up_after_max_retries_and_nacks() -> None:
    calls: list[int] = []

    @sub(topic="orders")
    def broken(data: Any, **attrs: Any) -> None:
        calls.append(1)
        raise ConnectionError("down")

    transport = MemoryTransport(redelivery_delay=60)
    retry = RetryMiddleware(max_retries=2, min_backoff=0.0, max_backoff=0.0)
    with Worker([broken], settings=settings(), transport=transport,
                middleware=MiddlewareChain([retry])):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["nacked"] == 1)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("error", "kwargs"),
    [
        (ValueError("bad input"), {"retry_on": (TimeoutError,)}),
        (TimeoutError("slow"), {"give_up_on": (TimeoutError,)}),
    ],
)
def test_retry_middleware_does_not_retry_what_it_is_told_not_to(
    error: Exception, kwargs: dict[str, Any]
) -> None:
    calls: list[int] = []

    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None:
        calls.append(1)
        raise error

    transport = MemoryTransport(redelivery_delay=60)
    retry = RetryMiddleware(max_retries=3, min_backoff=0.0, max_backoff=0.0, **kwargs)
    with Worker([handle], settings=settings(), transport=transport,
                middleware=MiddlewareChain([retry])):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["nacked"] == 1)
    assert len(calls) == 1


def test_retry_middleware_offers_no_retry_for_a_failed_filter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler never ran, so there is nothing to retry in place: no 'retry 1 of 3'."""
    calls: list[int] = []

    @sub(topic="orders", filter_by=lambda **attrs: int(attrs["n"]) > 0)
    def handle(data: Any, **attrs: Any) -> None:
        calls.append(1)

    transport = MemoryTransport(redelivery_delay=60)
    retry = RetryMiddleware(max_retries=3, min_backoff=0.0, max_backoff=0.0)
    with caplog.at_level(logging.INFO, logger="relay"), Worker(
        [handle], settings=settings(), transport=transport, middleware=MiddlewareChain([retry])
    ):
        transport.publish("orders", b"{}", {"n": "x"}).result(1)
        wait_for(lambda: transport.stats("orders")["nacked"] == 1)
    assert calls == []
    assert "retry 1 of" not in caplog.text


def test_retry_middleware_retries_async_handlers() -> None:
    calls: list[int] = []

    @sub(topic="orders")
    async def flaky(data: Any, **attrs: Any) -> None:
        await asyncio.sleep(0)
        calls.append(1)
        if len(calls) < 2:
            raise TimeoutError("once")

    transport = MemoryTransport()
    retry = RetryMiddleware(max_retries=2, min_backoff=0.01, max_backoff=0.01)
    with Worker([flaky], settings=settings(), transport=transport,
                middleware=MiddlewareChain([retry])):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert len(calls) == 2


def test_a_stopping_worker_does_not_wait_out_retry_backoff() -> None:
    started = threading.Event()

    @sub(topic="orders")
    def broken(data: Any, **attrs: Any) -> None:
        started.set()
        raise ConnectionError("down")

    transport = MemoryTransport(redelivery_delay=60)
    retry = RetryMiddleware(max_retries=5, min_backoff=30, max_backoff=30, jitter=False)
    worker = Worker([broken], settings=settings(), transport=transport,
                    middleware=MiddlewareChain([retry]))
    worker.start()
    transport.publish("orders", b"{}", {}).result(1)
    assert started.wait(5)
    time.sleep(0.05)
    begun = time.monotonic()
    assert worker.stop(timeout=20) is True
    assert time.monotonic() - begun < 10  # not the 30 s backoff
    assert transport.stats("orders")["nacked"] == 1


def test_retry_backoff_grows_and_is_bounded() -> None:
    retry = RetryMiddleware(min_backoff=0.5, max_backoff=3, multiplier=2, jitter=False)
    assert [retry.delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]
    jittered = RetryMiddleware(min_backoff=1, max_backoff=1)
    assert all(0.5 <= jittered.delay(0) <= 1.0 for _ in range(50))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"min_backoff": 2, "max_backoff": 1}, {"multiplier": 0.5},
     {"retry_on": ("TimeoutError",)}, {"give_up_on": (42,)}],
)
def test_retry_middleware_rejects_bad_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="RetryMiddleware"):
        RetryMiddleware(**kwargs)


# -------------------------------------------------------------- exactly once
def test_an_ack_that_fails_is_reported_to_middleware_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    done = threading.Event()

    @sub(topic="orders", enable_exactly_once_delivery=True)
    def handle(data: Any, **attrs: Any) -> None:
        done.set()

    transport = MemoryTransport(redelivery_delay=60)
    with Worker([handle], settings=settings(), transport=transport,
                middleware=MiddlewareChain([rec])):
        transport.fail_acks = ConnectionError("ack lost")
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: rec.hooks("post_ack_failure"))
    [(message, error)] = rec.hooks("post_ack_failure")
    assert isinstance(error, AckError) and isinstance(error.__cause__, ConnectionError)
    assert message.id in str(error)
    assert "was not applied" in caplog.text
    assert transport.stats("orders")["acked"] == 0 and transport.stats("orders")["pending"] == 1


def test_exactly_once_acks_that_succeed_report_nothing() -> None:
    rec = Recorder()

    @sub(topic="orders", enable_exactly_once_delivery=True)
    def handle(data: Any, **attrs: Any) -> None: ...

    transport = MemoryTransport()
    with Worker([handle], settings=settings(), transport=transport,
                middleware=MiddlewareChain([rec])):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert rec.hooks("post_ack_failure") == []
    spec = transport.get_subscription("orders")
    assert spec is not None and spec.enable_exactly_once_delivery


def test_streams_lease_in_steps_of_the_ack_deadline_unless_told_otherwise() -> None:
    class Recording(MemoryTransport):
        def __init__(self) -> None:
            super().__init__()
            self.flows: dict[str, FlowControl] = {}

        def subscribe(self, subscription: str, on_message: Any, flow_control: FlowControl) -> Any:
            self.flows[subscription] = flow_control
            return super().subscribe(subscription, on_message, flow_control)

    def noop(data: Any, **attrs: Any) -> None: ...

    subs = [sub(topic="orders")(noop), sub(topic="orders", suffix="slow", ack_deadline=120)(noop)]
    transport = Recording()
    with Worker(subs, settings=settings(ack_deadline=20), transport=transport):
        pass
    assert transport.flows["orders"].max_lease_extension == 20
    assert transport.flows["orders-slow"].max_lease_extension == 120
    transport = Recording()
    with Worker(subs, settings=settings(flow_max_lease_extension=30), transport=transport):
        pass
    assert {f.max_lease_extension for f in transport.flows.values()} == {30}
