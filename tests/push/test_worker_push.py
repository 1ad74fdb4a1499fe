"""A Worker given push subscriptions provisions them and pulls only the others:
Pub/Sub delivers a push subscription's messages to its endpoint and refuses a pull."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from relay import Worker, sub
from relay.transports.memory import MemoryTransport

from ..unit.helpers import settings

ENDPOINT = "https://shop-xyz.a.run.app/pubsub"


def test_push_subscriptions_are_provisioned_not_pulled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pulled: list[Any] = []
    got = threading.Event()

    @sub(topic="orders")
    def on_order(data: Any, **attrs: Any) -> None:
        pulled.append(data)
        got.set()

    @sub(topic="invoices", push_endpoint=ENDPOINT)
    def on_invoice(data: Any, **attrs: Any) -> None:
        pulled.append(data)

    transport = MemoryTransport()
    worker = Worker([on_order, on_invoice], settings=settings(), transport=transport)
    with caplog.at_level(logging.INFO, logger="relay.worker"):
        worker.start()
    try:
        spec = transport.get_subscription(on_invoice.name)
        assert spec is not None and spec.push_endpoint == ENDPOINT  # provisioned
        status = worker.status()
        assert [s["name"] for s in status["subscriptions"]] == [on_order.name]
        assert status["push_subscriptions"] == [on_invoice.name]
        assert f"{on_invoice.name} -> {ENDPOINT}" in caplog.text

        transport.publish("invoices", b'{"n": 1}', {})
        transport.publish("orders", b'{"n": 2}', {})
        assert got.wait(10)
        assert pulled == [{"n": 2}]  # the push subscription's message was not pulled
    finally:
        worker.stop(timeout=5)


def test_a_worker_with_only_push_subscriptions_says_so_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @sub(topic="invoices", push_endpoint=ENDPOINT)
    def on_invoice(data: Any, **attrs: Any) -> None: ...

    worker = Worker([on_invoice], settings=settings(), transport=MemoryTransport())
    with caplog.at_level(logging.INFO, logger="relay.worker"):
        worker.start()
    worker.stop(timeout=5)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "not pulling 1 push subscription(s)" in warning.getMessage()
    assert worker.status()["subscriptions"] == []
