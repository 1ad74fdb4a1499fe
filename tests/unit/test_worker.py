"""The Worker's ack policy, concurrency, drain and supervision, on the memory transport."""

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from relay import (
    Action,
    BaseMiddleware,
    DecodeError,
    MiddlewareChain,
    RetryPolicy,
    Status,
    Worker,
    sub,
)
from relay.contrib.unrecoverable import UnrecoverableError, UnrecoverableMiddleware
from relay.transports.base import ProvisionAction
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, settings, wait_for


def worker_for(subs: list[Any], *middleware: Any, **kw: Any) -> tuple[Worker, MemoryTransport]:
    transport = MemoryTransport()
    w = Worker(
        subs, settings=settings(**kw), transport=transport, middleware=MiddlewareChain(middleware)
    )
    return w, transport


def publish(transport: MemoryTransport, topic: str, data: bytes = b"{}", **attrs: str) -> None:
    transport.publish(topic, data, attrs).result(1)


def outcomes(rec: Recorder) -> list[Any]:
    return [o for _, o in rec.hooks("post_process_message")]


def test_success_acks_and_passes_data_and_attributes() -> None:
    got = []

    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> str:
        got.append((data, attrs))
        return "done"

    rec = Recorder()
    w, t = worker_for([handle], rec)
    with w:
        publish(t, "orders", b'{"id": 7}', kind="new")
        wait_for(lambda: t.stats("orders")["acked"] == 1)
    assert got == [({"id": 7}, {"kind": "new"})]
    [outcome] = rec.hooks("post_process_message_success")
    assert outcome.status is Status.SUCCESS and outcome.result == "done"
    assert outcome.action is Action.ACK and outcome.elapsed >= 0


def test_filtered_message_is_acked_and_reported_as_skipped() -> None:
    calls = []

    @sub(topic="photos", filter_by=lambda **a: a.get("type") == "landscape")
    def landscapes(data: Any, **attrs: Any) -> None:
        calls.append(attrs["type"])

    rec = Recorder()
    w, t = worker_for([landscapes], rec)
    with w:
        publish(t, "photos", type="portrait")
        publish(t, "photos", type="landscape")
        wait_for(lambda: t.stats("photos")["acked"] == 2)
    assert calls == ["landscape"]
    statuses = sorted(o.status.value for o in outcomes(rec))
    assert statuses == ["skipped", "success"]
    assert len(rec.hooks("post_process_message_success")) == 1  # skipped is not a success
    assert rec.hooks("post_process_message_failure") == []


def test_global_filter_setting_applies_to_every_subscription() -> None:
    calls = []

    @sub(topic="photos")
    def anything(data: Any, **attrs: Any) -> None:
        calls.append(attrs.get("lang"))

    w, t = worker_for([anything], filter_subs_by=[lambda **a: a.get("lang") == "es"])
    with w:
        publish(t, "photos", lang="en")
        publish(t, "photos", lang="es")
        wait_for(lambda: t.stats("photos")["acked"] == 2)
    assert calls == ["es"]


def test_handler_exception_nacks_and_the_message_is_redelivered() -> None:
    attempts: list[int] = []

    @sub(topic="orders")
    def flaky(data: Any, **attrs: Any) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("transient")

    rec = Recorder()
    w, t = worker_for([flaky], rec)
    with w:
        publish(t, "orders")
        wait_for(lambda: t.stats("orders")["acked"] == 1)
    assert len(attempts) == 3
    assert t.stats("orders")["nacked"] == 2
    failures = rec.hooks("post_process_message_failure")
    assert [type(o.exception) for o in failures] == [RuntimeError, RuntimeError]
    assert all(o.action is Action.NACK for o in failures)


def test_undecodable_payload_is_acked_reported_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    called = []

    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None:
        called.append(data)

    rec = Recorder()
    w, t = worker_for([handle], rec)
    with caplog.at_level(logging.ERROR), w:
        publish(t, "orders", b"\xffnot json at all" + b"x" * 1000)
        wait_for(lambda: t.stats("orders")["acked"] == 1)
    assert called == []
    assert t.stats("orders")["nacked"] == 0
    [outcome] = rec.hooks("post_process_message_failure")
    assert isinstance(outcome.exception, DecodeError)
    assert outcome.action is Action.ACK
    record = next(r for r in caplog.records if r.name == "relay.processing")
    assert "message 1 on subscription orders" in record.getMessage()
    assert "(1016 bytes)" in record.getMessage()  # truncated, size shown
    assert len(record.getMessage()) < 1000


def test_unrecoverable_middleware_still_loads_and_changes_nothing() -> None:
    """Listed in old settings, it is a no-op: relay handles UnrecoverableError itself."""
    @sub(topic="orders")
    def gone(data: Any, **attrs: Any) -> None:
        raise UnrecoverableError("record deleted")

    w, t = worker_for([gone], UnrecoverableMiddleware())
    with w:
        publish(t, "orders")
        wait_for(lambda: t.stats("orders")["acked"] == 1)
        time.sleep(0.05)
    assert t.stats("orders")["nacked"] == 0


class RaisesOnly(BaseMiddleware):
    def pre_process_message(self, subscription: Any, message: Any) -> None:
        raise RuntimeError("pre")

    def post_process_message(self, subscription: Any, message: Any, outcome: Any) -> None:
        raise ValueError("always")

    def pre_worker_start(self, worker: Any) -> None:
        raise RuntimeError("start")


def test_raising_middleware_does_not_stop_processing_or_change_the_outcome() -> None:
    done = []

    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None:
        done.append(data)

    rec = Recorder()
    w, t = worker_for([handle], RaisesOnly(), rec)
    with w:
        for i in range(5):
            publish(t, "orders", str(i).encode())
        wait_for(lambda: t.stats("orders")["acked"] == 5)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert t.stats("orders")["nacked"] == 0
    assert len(rec.hooks("post_process_message_success")) == 5


def test_one_shared_executor_bounds_sync_handlers_across_subscriptions() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def body(data: Any, **attrs: Any) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    a = sub(topic="orders", suffix="a")(body)
    b = sub(topic="orders", suffix="b")(body)
    w, t = worker_for([a, b], concurrency=3)
    with w:
        for _ in range(12):
            publish(t, "orders")
        wait_for(lambda: t.stats("orders-a")["acked"] + t.stats("orders-b")["acked"] == 24)
    assert peak[0] == 3  # saturated, never above the shared bound


def test_async_handlers_run_on_the_worker_loop_with_the_same_bound() -> None:
    state = {"running": 0, "peak": 0, "loops": set()}

    @sub(topic="orders")
    async def handle(data: Any, **attrs: Any) -> None:
        state["loops"].add(id(asyncio.get_running_loop()))
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        await asyncio.sleep(0.02)
        state["running"] -= 1

    rec = Recorder()
    w, t = worker_for([handle], rec, concurrency=4)
    with w:
        for _ in range(16):
            publish(t, "orders")
        wait_for(lambda: t.stats("orders")["acked"] == 16)
    assert state["peak"] == 4
    assert len(state["loops"]) == 1
    assert len(rec.hooks("post_process_message_success")) == 16


def test_async_handler_exception_nacks() -> None:
    seen = []

    @sub(topic="orders")
    async def handle(data: Any, **attrs: Any) -> None:
        seen.append(1)
        if len(seen) == 1:
            raise RuntimeError("first time")

    w, t = worker_for([handle])
    with w:
        publish(t, "orders")
        wait_for(lambda: t.stats("orders")["acked"] == 1)
    assert t.stats("orders")["nacked"] == 1 and len(seen) == 2


def test_stop_drains_in_flight_handlers_then_acks() -> None:
    started = threading.Event()
    finished = []

    @sub(topic="orders")
    def slow(data: Any, **attrs: Any) -> None:
        started.set()
        time.sleep(0.3)
        finished.append(data)

    rec = Recorder()
    w, t = worker_for([slow], rec, concurrency=2)
    w.start()
    publish(t, "orders", b"1")
    publish(t, "orders", b"2")
    started.wait(2)
    assert w.stop() is True
    assert sorted(finished) == [1, 2]
    assert t.stats("orders")["acked"] == 2
    hooks = [h for h, _ in rec.calls if "worker" in h]
    assert hooks == ["pre_worker_start", "post_worker_start", "pre_worker_stop", "post_worker_stop"]


def test_stop_gives_up_after_the_drain_timeout() -> None:
    release = threading.Event()

    @sub(topic="orders")
    def stuck(data: Any, **attrs: Any) -> None:
        release.wait(5)

    w, t = worker_for([stuck])
    w.start()
    publish(t, "orders")
    wait_for(lambda: t.stats("orders")["outstanding"] == 1)
    assert w.stop(timeout=0.1) is False
    release.set()
    # never acked by the worker: the memory transport put it back for redelivery
    wait_for(lambda: t.stats("orders")["pending"] == 1)


def test_provisioning_creates_then_updates_a_changed_ack_deadline() -> None:
    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None: ...

    transport = MemoryTransport()
    first = Worker([handle], settings=settings(), transport=transport)
    [created] = first.setup()
    assert created.action is ProvisionAction.CREATED
    assert transport.subscriptions["orders"].spec.ack_deadline == 60
    assert transport.subscriptions["orders"].spec.retry_policy == RetryPolicy(10, 600)

    second = Worker(
        [handle.with_options(ack_deadline=120, retry_policy=RetryPolicy(1, 5))],
        settings=settings(), transport=transport,
    )
    [updated] = second.setup()
    assert updated.action is ProvisionAction.UPDATED
    assert set(updated.changed) == {"ack_deadline", "retry_policy"}
    assert transport.subscriptions["orders"].spec.ack_deadline == 120
    assert second.setup()[0].action is ProvisionAction.UNCHANGED


def test_changed_filter_is_reported_as_a_conflict(caplog: pytest.LogCaptureFixture) -> None:
    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None: ...

    transport = MemoryTransport()
    Worker([handle], settings=settings(), transport=transport).setup()
    filtered = handle.with_options(backend_filter_by='attributes.type = "x"')
    with caplog.at_level(logging.WARNING):
        [result] = Worker([filtered], settings=settings(), transport=transport).setup()
    assert result.conflicts
    assert "cannot change a subscription's filter in place" in result.conflicts[0]
    assert "does not match the code" in caplog.text


def test_a_failed_stream_is_restarted_and_consumption_resumes(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relay.worker as worker_module

    monkeypatch.setattr(worker_module, "RESTART_BACKOFF_MIN", 0.05)
    got = []

    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None:
        got.append(data)

    w, t = worker_for([handle])
    with caplog.at_level(logging.INFO), w:
        publish(t, "orders", b"1")
        wait_for(lambda: got == [1])
        t.streams[0].fail(ConnectionError("connection reset"))
        wait_for(lambda: w.status()["subscriptions"][0]["failures"] == 1)
        publish(t, "orders", b"2")
        wait_for(lambda: got == [1, 2])
        assert w.status()["subscriptions"][0]["state"] == "open"
    assert "ConnectionError: connection reset" in caplog.text
    assert "restarted" in caplog.text


def test_stop_is_idempotent_and_start_provisions() -> None:
    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None: ...

    w, t = worker_for([handle])
    w.start()
    assert "orders" in t.subscriptions  # start() ran setup()
    assert w.stop() and w.stop()
    assert w.wait(0)


def test_run_forever_returns_after_stop_from_another_thread() -> None:
    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None: ...

    w, _ = worker_for([handle])
    threading.Timer(0.2, w.stop).start()
    w.run_forever()
    assert w.wait(0)
