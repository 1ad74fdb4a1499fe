"""Publisher back-pressure: bounded unconfirmed messages and bytes, block or error."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from relay import MiddlewareChain, Publisher, PublishError
from relay.publisher import PublisherFull
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, StalledTransport, settings


def publisher(transport: MemoryTransport, rec: Recorder, **kw: Any) -> Publisher:
    return Publisher(transport, settings=settings(**kw), middleware=MiddlewareChain([rec]))


def test_error_behaviour_rejects_at_the_message_limit_and_reports_each_rejection() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=3, publisher_limit_behavior="error")
    for n in range(3):
        pub.publish("orders", {"n": n})
    assert pub.outstanding[0] == 3
    for n in range(3, 5):
        with pytest.raises(PublishError, match="PUBLISHER_MAX_MESSAGES=3") as info:
            pub.publish("orders", {"n": n})
        assert isinstance(info.value.cause, PublisherFull)
    failures = rec.hooks("post_publish_failure")
    assert [m.data for m, _ in failures] == [{"n": 3}, {"n": 4}]
    assert len(transport.waiting) == 3  # nothing beyond the limit reached the transport
    transport.confirm(1)
    pub.publish("orders", {"n": 5})  # room again
    assert pub.outstanding[0] == 3


def test_raise_exception_false_returns_a_failed_future_instead() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=1, publisher_limit_behavior="error")
    pub.publish("orders", 1)
    future = pub.publish("orders", 2, raise_exception=False)
    assert isinstance(future.exception(0), PublisherFull)
    assert len(rec.hooks("post_publish_failure")) == 1


def test_the_byte_limit_counts_payload_sizes_but_lets_one_big_message_through() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_bytes=2048, publisher_limit_behavior="error")
    pub.publish("orders", "x" * 4000)  # alone and bigger than the budget: allowed
    with pytest.raises(PublishError, match="PUBLISHER_MAX_BYTES=2048"):
        pub.publish("orders", "small")
    transport.confirm(1)
    pub.publish("orders", "y" * 1000)
    pub.publish("orders", "z" * 900)
    with pytest.raises(PublishError):
        pub.publish("orders", "w" * 200)
    assert pub.outstanding == (2, len('"' + "y" * 1000 + '"') + len('"' + "z" * 900 + '"'))


def test_block_behaviour_waits_for_room() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=2, publisher_limit_behavior="block")
    pub.publish("orders", 1)
    pub.publish("orders", 2)
    threading.Timer(0.2, transport.confirm, args=(1,)).start()
    begun = time.monotonic()
    pub.publish("orders", 3)
    assert time.monotonic() - begun >= 0.1  # it did wait for the confirmation
    assert rec.hooks("post_publish_failure") == []


def test_block_behaviour_gives_up_after_the_retry_timeout() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=1, publisher_limit_behavior="block",
                    publisher_retry_timeout=0.2)
    pub.publish("orders", 1)
    with pytest.raises(PublishError, match="PUBLISHER_LIMIT_BEHAVIOR='block'"):
        pub.publish("orders", 2)
    assert len(rec.hooks("post_publish_failure")) == 1


def test_failed_publishes_free_their_room_too() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=2, publisher_limit_behavior="error")
    pub.publish("orders", 1)
    pub.publish("orders", 2)
    for future in transport.waiting:
        future.set_exception(ConnectionError("unreachable"))
    assert pub.outstanding == (0, 0)
    assert len(rec.hooks("post_publish_failure")) == 2
    pub.publish("orders", 3)
