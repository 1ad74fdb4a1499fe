"""Bad payloads on the way in: never lost, never fatal (memory transport).

Each case is a row of the bad-input table in docs/reliability.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from relay import MiddlewareChain, Worker, sub
from relay.transports.memory import MemoryTransport

from .helpers import settings, wait_for


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"id": 1', "not valid JSON"),
        (b"\xff\xfe\x00bytes", "not UTF-8"),
        (b"", "empty"),
    ],
    ids=["invalid-json", "non-utf8", "empty-body"],
)
def test_an_undecodable_payload_is_kept_on_the_dead_letter_topic_and_the_worker_goes_on(
    payload: bytes, reason: str
) -> None:
    handled: list[Any] = []

    @sub(topic="orders", dead_letter_topic="orders-dead")
    def handle(data: Any, **attrs: Any) -> None:
        handled.append(data)

    transport = MemoryTransport()
    with Worker([handle], settings=settings(), transport=transport, middleware=MiddlewareChain()):
        transport.publish("orders", payload, {"source": "test"}).result(1)
        transport.publish("orders", b'{"id": 2}', {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 2)
        wait_for(lambda: transport.stats("orders-dead")["pending"] == 1)
    assert handled == [{"id": 2}]
    [dead] = [r for r in transport.published if r.topic == "orders-dead"]
    assert dead.data == payload and dead.attributes["source"] == "test"
    assert reason in dead.attributes["relay_dead_letter_reason"]
