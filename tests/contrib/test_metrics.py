"""MetricsMiddleware on the memory transport, read back with ``InMemoryMetricReader``."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider

import relay
from relay import PublishError
from relay.contrib.metrics import DURATION_BUCKETS, MetricsMiddleware
from relay.testing import memory_app

from .conftest import Metrics

SEND = {
    "messaging.system": "gcp_pubsub",
    "messaging.operation.name": "send",
    "messaging.operation.type": "send",
}
PROCESS = {
    "messaging.system": "gcp_pubsub",
    "messaging.operation.name": "process",
    "messaging.operation.type": "process",
}


class OrderRejected(Exception):
    pass


def key(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


def test_instruments_have_the_semconv_names_units_and_buckets(meters: Metrics) -> None:
    with memory_app(MIDDLEWARE=[MetricsMiddleware(meter_provider=meters.provider)]) as env:
        relay.publish("orders", {"id": 1})

        @relay.sub(topic="orders")
        def handle(data: Any, **attrs: str) -> None:
            pass

        env.deliver([handle])

    found = meters.collect()
    assert {name: (m.unit, type(m.data).__name__) for name, m in found.items()} == {
        "messaging.client.sent.messages": ("{message}", "Sum"),
        "messaging.client.operation.duration": ("s", "Histogram"),
        "messaging.client.consumed.messages": ("{message}", "Sum"),
        "messaging.process.duration": ("s", "Histogram"),
    }
    for counter in ("messaging.client.sent.messages", "messaging.client.consumed.messages"):
        assert found[counter].data.is_monotonic
    for histogram in ("messaging.client.operation.duration", "messaging.process.duration"):
        [point] = found[histogram].data.data_points
        assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    assert DURATION_BUCKETS == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    )


def test_publishes_are_counted_and_timed_by_topic_and_outcome(meters: Metrics) -> None:
    with memory_app(MIDDLEWARE=[MetricsMiddleware(meter_provider=meters.provider)]) as env:
        relay.publish("orders", {"id": 1})
        relay.publish("orders", {"id": 2})
        relay.publish("invoices", {"id": 3})
        env.transport.fail_publishes = ConnectionError("down")
        with pytest.raises(PublishError):
            relay.publish("orders", {"id": 4}, blocking=True)

    sent = meters.points("messaging.client.sent.messages")
    ok_orders = key(**SEND, **{"messaging.destination.name": "orders",
                               "relay.outcome": "success"})
    ok_invoices = key(**SEND, **{"messaging.destination.name": "invoices",
                                 "relay.outcome": "success"})
    failed = key(**SEND, **{"messaging.destination.name": "orders", "relay.outcome": "failure",
                            "error.type": "ConnectionError"})
    assert {k: p.value for k, p in sent.items()} == {ok_orders: 2, ok_invoices: 1, failed: 1}

    durations = meters.points("messaging.client.operation.duration")
    assert {k: p.count for k, p in durations.items()} == {ok_orders: 2, ok_invoices: 1, failed: 1}
    assert all(p.min >= 0 for p in durations.values())


def test_processed_messages_are_counted_and_timed_by_subscription_and_outcome(
    meters: Metrics,
) -> None:
    @relay.sub(topic="orders", filter_by=lambda **attrs: attrs.get("kind") != "test")
    def store(data: Any, **attrs: str) -> None:
        if data.get("reject"):
            raise OrderRejected("no")

    with memory_app(MIDDLEWARE=[MetricsMiddleware(meter_provider=meters.provider)],
                    SUB_PREFIX="shop") as env:
        relay.publish("orders", {"id": 1})
        relay.publish("orders", {"id": 2})
        relay.publish("orders", {"id": 3, "reject": True})
        relay.publish("orders", {"id": 4}, kind="test")
        env.transport.publish("orders", b"not json", {})
        env.deliver([store], raise_errors=False)

    where = {"messaging.destination.name": "orders",
             "messaging.destination.subscription.name": "shop-orders"}
    success = key(**PROCESS, **where, **{"relay.outcome": "success"})
    skipped = key(**PROCESS, **where, **{"relay.outcome": "skipped"})
    rejected = key(**PROCESS, **where, **{"relay.outcome": "failure",
                                          "error.type": f"{__name__}.OrderRejected"})
    undecodable = key(**PROCESS, **where, **{"relay.outcome": "failure",
                                             "error.type": "relay.errors.DecodeError"})
    consumed = meters.points("messaging.client.consumed.messages")
    assert {k: p.value for k, p in consumed.items()} == {
        success: 2, skipped: 1, rejected: 1, undecodable: 1,
    }
    durations = meters.points("messaging.process.duration")
    assert {k: p.count for k, p in durations.items()} == {
        success: 2, skipped: 1, rejected: 1, undecodable: 1,
    }


def test_the_process_duration_is_the_outcomes_elapsed_time(meters: Metrics) -> None:
    import time

    @relay.sub(topic="orders")
    def slow(data: Any, **attrs: str) -> None:
        time.sleep(0.03)

    with memory_app(MIDDLEWARE=[MetricsMiddleware(meter_provider=meters.provider)]) as env:
        relay.publish("orders", {"id": 1})
        [outcome] = env.deliver([slow])

    [point] = meters.points("messaging.process.duration").values()
    assert point.sum == pytest.approx(outcome.elapsed)
    assert 0.03 <= point.sum < 1.0
    # 0.03 s falls in the (0.025, 0.05] bucket
    assert list(point.bucket_counts)[DURATION_BUCKETS.index(0.05)] == 1


def test_without_a_provider_nothing_breaks() -> None:
    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> str:
        return "done"

    metrics = MetricsMiddleware(meter_provider=NoOpMeterProvider())
    with memory_app(MIDDLEWARE=[metrics]) as env:
        relay.publish("orders", {"id": 1})
        [outcome] = env.deliver([handle])
    assert outcome.result == "done"
