"""What the Publisher keeps while a message is in flight, and lets go of after:
the message, its room in the budget, the threads waiting for room, topic names."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest

from relay import MiddlewareChain, Publisher, PublishError
from relay.errors import ConfigurationError
from relay.message import OutgoingMessage
from relay.middleware import BaseMiddleware

from .helpers import Recorder, StalledTransport, settings


class Watch(BaseMiddleware):
    """Keeps a weak reference to each message it sees, and nothing else."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref[OutgoingMessage]] = []
        self.succeeded = 0

    def pre_publish(self, message: OutgoingMessage) -> None:
        self.refs.append(weakref.ref(message))

    def post_publish_success(self, message: OutgoingMessage, elapsed: float) -> None:
        self.succeeded += 1


def test_a_finished_future_does_not_keep_its_message_alive() -> None:
    transport, watch = StalledTransport(), Watch()
    pub = Publisher(transport, settings=settings(), middleware=MiddlewareChain([watch]))
    future = pub.publish("orders", {"blob": "x" * 10_000})
    gc.collect()
    assert watch.refs[0]() is not None, "in flight, the publisher holds the message"
    transport.confirm(1)
    assert future.result(0) == "id" and watch.succeeded == 1
    gc.collect()
    assert watch.refs[0]() is None, "the caller keeps only the future"
    assert pub.outstanding == (0, 0)


def test_a_timed_out_publish_gives_its_room_back_when_confirmed_late() -> None:
    transport, watch, rec = StalledTransport(), Watch(), Recorder()
    pub = Publisher(transport, settings=settings(), middleware=MiddlewareChain([watch, rec]))
    with pytest.raises(PublishError):
        pub.publish("orders", {"n": 1}, blocking=True, timeout=0.05)
    assert len(rec.hooks("post_publish_failure")) == 1
    assert pub.outstanding[0] == 1, "unconfirmed, it still holds its room"
    rec.calls.clear()
    gc.collect()
    assert watch.refs[0]() is None, "after its failure hook, nothing keeps the message"
    transport.confirm(1)  # the late confirmation: room back, no second hook
    assert pub.outstanding == (0, 0)
    assert rec.calls == [] and watch.succeeded == 0


def test_threads_waiting_for_room_are_each_woken_as_room_frees() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = Publisher(
        transport,
        settings=settings(
            publisher_max_messages=1, publisher_limit_behavior="block", publisher_retry_timeout=10
        ),
        middleware=MiddlewareChain([rec]),
    )
    pub.publish("orders", 0)
    errors: list[BaseException] = []

    def publish(n: int) -> None:
        try:
            pub.publish("orders", n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for confirmed in range(1, 4):  # each confirmation lets exactly one waiter in
        _wait_for(lambda: len(transport.waiting) == 1)
        transport.confirm(1)
        _wait_for(lambda c=confirmed: len(rec.hooks("post_publish_success")) == c)
    for thread in threads:
        thread.join(5)
    _wait_for(lambda: len(transport.waiting) == 1)
    transport.confirm(1)
    assert errors == []
    assert len(rec.hooks("post_publish_success")) == 4
    assert pub.outstanding == (0, 0)


class Topics(StalledTransport):
    def __init__(self) -> None:
        super().__init__()
        self.topics: list[str] = []

    def publish(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        self.topics.append(topic)
        return super().publish(topic, *args, **kwargs)


def test_a_bad_topic_name_is_refused_every_time_and_a_good_one_is_prefixed() -> None:
    transport = Topics()
    pub = Publisher(transport, settings=settings(topic_prefix="dev-"), middleware=MiddlewareChain())
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="contains '/'"):
            pub.publish("or/ders", {})
    pub.publish("orders", {})
    pub.publish("orders", {})
    assert transport.topics == ["dev-orders", "dev-orders"]
    assert pub.outstanding[0] == 2


def _wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not check():
            if deadline.wait(0.01):
                pytest.fail("timed out waiting")
    finally:
        timer.cancel()
