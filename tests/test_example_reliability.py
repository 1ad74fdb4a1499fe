"""examples/reliability on a real Worker and the memory transport: retries in place,
dead letters (a poison payment and an undecodable payload) audited, order kept."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from relay import Publisher, Settings, Worker
from relay.discovery import discover
from relay.middleware import MiddlewareChain
from relay.transports.memory import MemoryTransport

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "reliability"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"reliability_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def isolated() -> Iterator[None]:
    path = list(sys.path)
    yield
    for name in [n for n in sys.modules if n == "subs" or n.startswith("subs.")]:
        del sys.modules[name]
    sys.path[:] = path


@pytest.mark.usefixtures("isolated")
def test_reliability_example() -> None:
    config = Settings.from_object(load("settings"), environ={}).replace(
        transport="memory", default_retry_policy=None
    )
    subscriptions = discover(EXAMPLE, settings=config)
    subs = sys.modules["subs"]
    transport = MemoryTransport()
    worker = Worker(subscriptions, settings=config, transport=transport,
                    middleware=MiddlewareChain.from_settings(config))
    worker.setup()
    assert {"payments", "payments-dead-letter", "shipments"} <= set(transport.topics)
    assert "shipments-dead-letter" not in transport.topics  # ship opted out
    publisher = Publisher(transport, settings=config)
    for event in ("packed", "shipped", "delivered"):
        for order in ("A", "B"):
            publisher.publish("shipments", {"order": order, "event": event}, ordering_key=order)
    with worker:
        publisher.publish("payments", {"id": 1, "amount": 30, "flaky": True})
        publisher.publish("payments", {"id": 2, "amount": -5})
        publisher.publish("payments", {"id": 3, "amount": 12})
        transport.publish("payments", b"{not json", {"source": "legacy"}).result(1)
        end = time.monotonic() + 20
        while time.monotonic() < end and not (
            len(subs.audited) == 1 and len(subs.charged) == 2
            and sum(map(len, subs.shipped.values())) == 6
        ):
            time.sleep(0.02)

    assert sorted(subs.charged) == [1, 3]
    # The flaky payment was retried in place: the only nacks are the poison one's 5.
    assert subs._gateway_calls[1] == 2
    assert transport.stats("reliability-payments")["nacked"] == 5
    assert subs.shipped == {"A": ["packed", "shipped", "delivered"],
                            "B": ["packed", "shipped", "delivered"]}
    # The poison payment, after 5 deliveries, reached the audit handler.
    [audited] = subs.audited
    assert audited["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert transport.stats("reliability-payments")["dead_lettered"] == 1
    # Both dead letters, the poison one and the undecodable one, are kept by the
    # keeper subscription relay created on the dead-letter topic.
    kept = transport.stats("payments-dead-letter")
    assert kept["pending"] == 2
    dead = [r for r in transport.published if r.topic == "payments-dead-letter"]
    assert sorted(r.data for r in dead) == [b'{"id":2,"amount":-5}', b"{not json"]
