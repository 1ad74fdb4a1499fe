"""``publish_many`` / ``apublish_many``: many messages in one call, one result each.

One bad, refused or failed item never stops the others, and never goes unreported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import pytest

import relay
from relay import BatchPublishError, Item, MiddlewareChain, Publisher
from relay.codec import Codec
from relay.publisher import PublisherFull
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, StalledTransport, settings


class RefusingTransport(MemoryTransport):
    """Fails the future of any message whose payload mentions ``refuse``."""

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        if b"refuse" in data:
            failed: Future[str] = Future()
            failed.set_exception(PermissionError(f"{topic}: not allowed"))
            return failed
        return super().publish(topic, data, attributes, ordering_key=ordering_key)


def publisher(transport: MemoryTransport, rec: Recorder, **kw: Any) -> Publisher:
    return Publisher(transport, settings=settings(**kw), middleware=MiddlewareChain([rec]))


def sent(transport: MemoryTransport) -> list[tuple[Any, Any]]:
    return [(r, Codec.decode(r.data)) for r in transport.published]


def test_items_and_plain_data_go_out_in_order_with_one_id_each() -> None:
    transport, rec = MemoryTransport(), Recorder()
    pub = publisher(transport, rec)
    results = pub.publish_many("orders", [
        {"id": 1},
        Item({"id": 2}, ordering_key="customer-9", kind="created"),
        Item({"id": 3}, attrs={"blocking": "no", "x-trace": "t"}),
    ])
    assert results.ok and len(results) == 3 and not results.failed
    records = sent(transport)
    assert [data for _, data in records] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert results.message_ids == [r.message_id for r, _ in records]
    assert [r.index for r in results] == [0, 1, 2]
    assert records[1][0].ordering_key == "customer-9"
    assert records[1][0].attributes["kind"] == "created"
    assert records[2][0].attributes["blocking"] == "no"
    assert records[2][0].attributes["x-trace"] == "t"
    assert all("published_at" in r.attributes for r, _ in records)
    assert len(rec.hooks("post_publish_success")) == 3


def test_one_bad_item_is_reported_by_index_and_the_others_still_go() -> None:
    transport, rec = MemoryTransport(), Recorder()
    pub = publisher(transport, rec)
    with pytest.raises(BatchPublishError) as raised:
        pub.publish_many("orders", [1, float("nan"), 3, Item(4, attrs={"big": "x" * 1025})])
    error = raised.value
    assert isinstance(error, relay.PublishError) and error.topic == "orders"
    assert "failed for 2 of 4 message(s)" in str(error)
    assert "[1] EncodeError" in str(error) and "[3] ConfigurationError" in str(error)
    assert [r.ok for r in error.results] == [True, False, True, False]
    assert isinstance(error.results[1].error, relay.EncodeError)
    assert error.cause is error.results[1].error
    assert [data for _, data in sent(transport)] == [1, 3]


def test_failures_reported_by_the_transport_land_on_their_item() -> None:
    transport, rec = RefusingTransport(), Recorder()
    pub = publisher(transport, rec)
    results = pub.publish_many("orders", ["a", "refuse", "b"], raise_exception=False)
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, PermissionError) and results[1].message_id is None
    ((message, error),) = rec.hooks("post_publish_failure")
    assert message.data == "refuse" and error is results[1].error


def test_without_raising_the_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    pub = publisher(MemoryTransport(), Recorder())
    with caplog.at_level(logging.ERROR, logger="relay.publisher"):
        results = pub.publish_many("orders", [1, float("inf")], raise_exception=False)
    assert not results.ok and results.message_ids[1] is None
    assert "failed for 1 of 2 message(s): [1] EncodeError" in caplog.text
    with pytest.raises(BatchPublishError):
        results.raise_for_errors("orders")


def test_no_room_and_no_confirmation_are_each_their_items_error() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=2, publisher_limit_behavior="error")
    results = pub.publish_many("orders", [1, 2, 3], timeout=0.05, raise_exception=False)
    assert isinstance(results[0].error, TimeoutError)
    assert isinstance(results[1].error, TimeoutError)
    assert isinstance(results[2].error, PublisherFull)
    assert len(transport.waiting) == 2  # the third never reached the transport
    failures = rec.hooks("post_publish_failure")
    assert sorted(m.data for m, _ in failures) == [1, 2, 3]  # exactly one hook each
    transport.confirm(2)
    assert rec.hooks("post_publish_success") == [] and pub.outstanding == (0, 0)


def test_apublish_many_awaits_room_on_the_loop_and_reports_per_item() -> None:
    transport, rec = StalledTransport(), Recorder()
    pub = publisher(transport, rec, publisher_max_messages=1, publisher_limit_behavior="block")

    async def confirm_as_they_come() -> None:
        confirmed = 0
        while confirmed < 2:  # runs beside apublish_many: the loop is never blocked
            if transport.waiting:
                transport.confirm(1)
                confirmed += 1
            await asyncio.sleep(0.005)

    async def main() -> relay.PublishResults:
        helper = asyncio.create_task(confirm_as_they_come())
        results = await pub.apublish_many(
            "orders", [1, float("nan"), 2], timeout=5, raise_exception=False
        )
        await helper
        return results

    results = asyncio.run(main())
    assert [r.ok for r in results] == [True, False, True]
    assert results.message_ids == ["id", None, "id"]
    assert isinstance(results[1].error, relay.EncodeError)


def test_the_process_wide_publish_many() -> None:
    from relay.testing import memory_app

    with memory_app() as env:
        results = relay.publish_many("orders", [{"n": 1}, {"n": 2}])
        assert env.published_data("orders") == [{"n": 1}, {"n": 2}]
    assert results.ok and repr(results) == "<PublishResults 2 published, 0 failed>"
