"""``apublish``: publish's validation, hooks and back-pressure, awaited on the loop.

Waiting for room or for a confirmation must never block the event loop: each
test that waits runs a ticker coroutine beside it and checks it kept ticking.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import relay
from relay import MiddlewareChain, Publisher, PublishError
from relay.codec import Codec
from relay.publisher import PublisherFull
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, StalledTransport, settings


def sent(transport: MemoryTransport, topic: str) -> list[Any]:
    """What reached the transport for ``topic``: (record, decoded data) pairs."""
    return [(r, Codec.decode(r.data)) for r in transport.published if r.topic == topic]


def publisher(transport: MemoryTransport, rec: Recorder, **kw: Any) -> Publisher:
    return Publisher(transport, settings=settings(**kw), middleware=MiddlewareChain([rec]))


class Ticks:
    """How often a ticker coroutine got to run: a blocked loop stops the count."""

    def __init__(self) -> None:
        self.count = 0


async def ticking(work: Callable[[], Any], ticks: Ticks | None = None) -> tuple[Any, int]:
    """Await ``work()`` while a ticker runs on the same loop; (result, ticks)."""
    ticks = ticks or Ticks()
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.count += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        return await work(), ticks.count
    finally:
        stop.set()
        await task


def later(seconds: float, action: Callable[[], Any]) -> None:
    """Run ``action`` on another thread after ``seconds`` (a confirmation arriving)."""
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


def test_apublish_returns_the_message_id_after_the_hooks_ran() -> None:
    transport, rec = MemoryTransport(), Recorder()
    pub = publisher(transport, rec)
    message_id = asyncio.run(pub.apublish("orders", {"id": 1}, ordering_key="k", source="web"))
    ((record, data),) = sent(transport, "orders")
    assert record.message_id == message_id and data == {"id": 1}
    assert record.attributes["source"] == "web" and "published_at" in record.attributes
    assert record.ordering_key == "k"
    assert [m.message_id for m in rec.hooks("post_publish_success")] == [message_id]
    assert len(rec.hooks("pre_publish")) == 1 and rec.hooks("post_publish_failure") == []


def test_apublish_refuses_bad_input_before_anything_is_sent() -> None:
    transport, rec = MemoryTransport(), Recorder()
    pub = publisher(transport, rec)
    with pytest.raises(relay.EncodeError, match="NaN"):
        asyncio.run(pub.apublish("orders", float("nan")))
    with pytest.raises(relay.ConfigurationError, match="invalid topic name"):
        asyncio.run(pub.apublish("o", 1))
    assert transport.published == [] and rec.calls == []


def test_apublish_has_no_blocking_option_and_says_how_to_send_such_an_attribute() -> None:
    transport, rec = MemoryTransport(), Recorder()
    pub = publisher(transport, rec)
    with pytest.raises(relay.ConfigurationError, match=r"attrs=\{'blocking': \.\.\.\}"):
        asyncio.run(pub.apublish("orders", 1, blocking="yes"))  # type: ignore[arg-type]
    asyncio.run(pub.apublish("orders", 1, attrs={"blocking": "yes"}))
    ((record, _),) = sent(transport, "orders")
    assert record.attributes["blocking"] == "yes"


def test_waiting_for_room_awaits_without_blocking_the_loop() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=1, publisher_limit_behavior="block")
    pub.publish("orders", 1)  # fills the budget

    ticks, while_waiting = Ticks(), []

    def free_room() -> None:
        while_waiting.append(ticks.count)
        transport.confirm(1)

    async def main() -> tuple[Any, int]:
        later(0.15, free_room)  # frees room for the await below
        later(0.3, lambda: transport.confirm(1))  # confirms the awaited message
        return await ticking(lambda: pub.apublish("orders", 2, timeout=5), ticks)

    message_id, _ = asyncio.run(main())
    assert message_id == "id"
    assert while_waiting[0] >= 5  # ~0.15 s of 5 ms ticks before room came: the loop ran
    assert rec.hooks("post_publish_failure") == []
    assert pub.outstanding == (0, 0)


def test_no_room_in_time_raises_publish_error_and_fires_the_failure_hook() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=1, publisher_limit_behavior="block",
                    publisher_retry_timeout=0.1)
    pub.publish("orders", 1)

    ticks = Ticks()

    async def main() -> tuple[Any, int]:
        return await ticking(lambda: pub.apublish("orders", 2), ticks)

    with pytest.raises(PublishError, match="PUBLISHER_MAX_MESSAGES=1") as raised:
        asyncio.run(main())
    assert ticks.count >= 5  # the 0.1 s wait for room left the loop running
    assert isinstance(raised.value.cause, PublisherFull)
    ((message, error),) = rec.hooks("post_publish_failure")
    assert message.data == 2 and error is raised.value.cause
    assert len(transport.waiting) == 1  # the refused message never reached the transport


def test_a_cancelled_waiter_takes_no_room_and_passes_its_turn_on() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=1, publisher_limit_behavior="block")
    pub.publish("orders", 0)

    async def main() -> str:
        first = asyncio.create_task(pub.apublish("orders", 1, timeout=5))
        second = asyncio.create_task(pub.apublish("orders", 2, timeout=5))
        await asyncio.sleep(0.05)  # both are waiting for room, first in line
        first.cancel()
        later(0.05, lambda: transport.confirm(1))  # room for one: it must go to `second`
        while len(transport.waiting) < 1 or pub.outstanding[0] < 1:
            await asyncio.sleep(0.005)
        later(0.0, lambda: transport.confirm(1))
        return await second

    assert asyncio.run(main()) == "id"
    assert [m.data for m in rec.hooks("pre_publish")] == [0, 1, 2]
    assert [m.data for m in rec.hooks("post_publish_success")] == [0, 2]
    assert pub.outstanding == (0, 0)


def test_no_confirmation_in_time_raises_and_a_late_one_fires_no_second_hook() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec)

    ticks = Ticks()

    async def main() -> tuple[Any, int]:
        return await ticking(lambda: pub.apublish("orders", 1, timeout=0.1), ticks)

    with pytest.raises(PublishError, match=r"did not complete within 0\.1 s") as raised:
        asyncio.run(main())
    assert ticks.count >= 5  # waiting for the confirmation left the loop running
    assert isinstance(raised.value.cause, TimeoutError)
    transport.confirm(1)
    assert len(rec.hooks("post_publish_failure")) == 1
    assert rec.hooks("post_publish_success") == []
    assert pub.outstanding == (0, 0)  # the late confirmation still freed its room


def test_a_transport_failure_raises_publish_error_with_its_cause() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec)

    async def main() -> str:
        later(0.05, lambda: transport.waiting[0].set_exception(ConnectionError("refused")))
        return await pub.apublish("orders", 1)

    with pytest.raises(PublishError, match="ConnectionError: refused") as raised:
        asyncio.run(main())
    assert isinstance(raised.value.cause, ConnectionError)
    ((_, error),) = rec.hooks("post_publish_failure")
    assert error is raised.value.cause


def test_the_process_wide_apublish_uses_the_process_wide_publisher() -> None:
    from relay.testing import memory_app

    with memory_app() as env:
        message_id = asyncio.run(relay.apublish("orders", {"id": 7}, kind="created"))
        ((record, data),) = sent(env.transport, "orders")
    assert record.message_id == message_id and record.attributes["kind"] == "created"
    assert data == {"id": 7}
