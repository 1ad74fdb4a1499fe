"""countdown/eta: a worker holds a task message until it is due, without a handler
thread and without using up a delivery attempt; it hands held messages back by
publishing them again (at its lease limit, and when it stops)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from relay import Settings, TaskStatus, task
from relay.delays import Holder, max_delay
from relay.task_wire import format_eta
from relay.testing import memory_app
from relay.transports.base import FlowControl, ReceivedMessage, SubscriptionSpec
from relay.transports.memory import MemoryMessage, MemoryTransport, PublishedRecord

from .helpers import wait_for

ran: list[tuple[str, float]] = []
_lock = threading.Lock()


@task
def stamp(label: str) -> str:
    with _lock:
        ran.append((label, time.monotonic()))
    return label


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()



def test_max_delay_is_the_lease_limit_minus_a_margin() -> None:
    assert max_delay(Settings()) == 3540
    assert max_delay(Settings(flow_max_lease_duration=7 * 24 * 3600)) == 7 * 24 * 3600 - 60
    assert max_delay(Settings(flow_max_lease_duration=60)) == 30


def test_a_held_task_takes_no_handler_thread_and_no_delivery_attempt() -> None:
    with memory_app(RESULTS="memory", CONCURRENCY=1) as env, env.worker([stamp]):
        sent = time.monotonic()
        later = stamp.apply_async(("later",), countdown=0.6)
        now = stamp.delay("now")
        assert now.result(timeout=5) == "now"  # the one thread was free
        assert later.status() is TaskStatus.PENDING
        assert later.result(timeout=5) == "later"
        name = stamp.resolve(env.settings).name
        stats = env.transport.stats(name)
        assert env.results is not None
        record = env.results.get(later.id)
    labels = [label for label, _ in ran]
    assert labels == ["now", "later"]
    assert ran[1][1] - sent >= 0.6
    assert record is not None and record.attempt == 1  # delivered once, never redelivered
    assert stats["nacked"] == stats["expired"] == 0
    assert [r.topic for r in env.published].count(stamp.topic) == 2  # never published again


def test_deliver_runs_a_delayed_task_at_once() -> None:
    with memory_app(RESULTS="memory") as env:
        handle = stamp.apply_async(("x",), countdown=600)
        env.deliver([stamp])
        assert handle.result(timeout=1) == "x"


def test_a_stopping_worker_publishes_what_it_holds_again_and_acks_it() -> None:
    with memory_app() as env:
        worker = env.worker([stamp])
        with worker:
            stamp.apply_async(("later",), countdown=60)
            name = stamp.resolve(env.settings).name
            wait_for(lambda: env.transport.stats(name)["outstanding"] == 1, what="the message held")
        # Handed back, not run: had stop() waited for the 60 s countdown, ran would hold it.
        assert worker.stop() is True
    original, copy = [r for r in env.published if r.topic == stamp.topic]
    assert (copy.data, dict(copy.attributes)) == (original.data, dict(original.attributes))
    stats = env.transport.stats(name)
    assert stats["acked"] == 1 and stats["nacked"] == 0 and ran == []


def test_at_its_lease_limit_a_held_message_is_published_again_and_held_anew() -> None:
    transport = MemoryTransport()
    transport.ensure_topic("jobs")
    transport.create_subscription(SubscriptionSpec(name="jobs", topic="jobs"))
    stopping = threading.Event()
    holder = Holder("jobs", "jobs", 0.1, lambda: transport, stopping)
    dispatched: list[ReceivedMessage] = []
    done: list[ReceivedMessage] = []

    def on_message(received: ReceivedMessage) -> None:
        if not holder.hold(received, dispatched.append, done.append):
            dispatched.append(received)

    stream = transport.subscribe("jobs", on_message, FlowControl())
    try:
        eta = time.time() + 0.35
        transport.publish("jobs", b"{}", {"relay_eta": format_eta(eta)}).result()
        wait_for(lambda: dispatched, what="the message to fall due")
        assert time.time() >= eta - 0.01
        copies = [r for r in transport.published if r.topic == "jobs"]
        assert len(copies) >= 3  # the original, then a copy each time the 0.1 s limit came
        assert len(done) == len(copies) - 1 and all(d.attributes == copies[0].attributes
                                                    for d in done)
        assert dispatched[0].message_id == copies[-1].message_id
        stats = transport.stats("jobs")
        assert stats["acked"] == len(copies) - 1 and stats["nacked"] == 0
    finally:
        stream.close()
        transport.close()


def test_a_message_without_a_readable_eta_is_not_held() -> None:
    transport = MemoryTransport()
    holder = Holder("jobs", "jobs", 10, lambda: transport, threading.Event())
    def message(attributes: dict[str, str]) -> MemoryMessage:
        now = dt.datetime.now(dt.timezone.utc)
        record = PublishedRecord("jobs", b"{}", attributes, "", "1", now)
        return MemoryMessage(record)

    for attributes in ({}, {"relay_eta": "soon"}, {"relay_eta": "2020-01-01T00:00:00"},
                       {"relay_eta": "2020-01-01T00:00:00+00:00"}):
        assert holder.hold(message(attributes), pytest.fail, pytest.fail) is False
    assert len(holder) == 0
