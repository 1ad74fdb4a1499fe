"""PROVISIONING modes (create / verify / off) and plans, on the memory transport."""

from __future__ import annotations

from typing import Any

import pytest

from relay import ProvisioningError, RetryPolicy, Worker, sub
from relay import provisioning as prov
from relay.transports.base import SubscriptionSpec
from relay.transports.memory import MemoryTransport

from .helpers import settings


class CountingTransport(MemoryTransport):
    """A memory transport that records which provisioning calls were made."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def ensure_topic(self, topic: str) -> bool:
        self.calls.append(f"ensure_topic {topic}")
        return super().ensure_topic(topic)

    def topic_exists(self, topic: str) -> bool:
        self.calls.append(f"topic_exists {topic}")
        return super().topic_exists(topic)

    def get_subscription(self, name: str) -> SubscriptionSpec | None:
        self.calls.append(f"get_subscription {name}")
        return super().get_subscription(name)

    def create_subscription(self, spec: SubscriptionSpec) -> bool:
        self.calls.append(f"create_subscription {spec.name}")
        return super().create_subscription(spec)

    def update_subscription(self, spec: SubscriptionSpec, fields: tuple[str, ...]) -> None:
        self.calls.append(f"update_subscription {spec.name} {','.join(fields)}")
        super().update_subscription(spec, fields)

    def writes(self) -> list[str]:
        return [c for c in self.calls if not c.startswith(("topic_exists", "get_subscription"))]


def handler(data: Any, **attrs: Any) -> None: ...


orders = sub(topic="orders", dead_letter_topic="orders-dead")(handler)
payments = sub(topic="payments", ack_deadline=30)(handler)


def test_verify_lists_everything_missing_and_makes_no_changes() -> None:
    transport = CountingTransport()
    worker = Worker([orders, payments], settings=settings(provisioning="verify"),
                    transport=transport)
    with pytest.raises(ProvisioningError) as info:
        worker.setup()
    text = str(info.value)
    for line in ("topic orders does not exist", "topic orders-dead does not exist",
                 "topic payments does not exist", "subscription orders does not exist",
                 "subscription orders-dead does not exist",
                 "subscription payments does not exist"):
        assert line in text
    assert "relay-cli plan" in text
    assert transport.writes() == []
    assert transport.topics == {}


def test_verify_reports_mismatched_fields_and_passes_once_in_sync() -> None:
    transport = CountingTransport()
    Worker([orders, payments], settings=settings(), transport=transport).setup()
    changed = payments.with_options(ack_deadline=60, retry_policy=RetryPolicy(5, 50))
    worker = Worker([orders, changed], settings=settings(provisioning="verify"),
                    transport=transport)
    transport.calls.clear()
    with pytest.raises(ProvisioningError, match=r"subscription payments differs: "
                       r"ack_deadline: 30 -> 60; retry_policy: 10s\.\.600s -> 5s\.\.50s"):
        worker.setup()
    assert transport.writes() == []
    in_sync = Worker([orders, payments], settings=settings(provisioning="verify"),
                     transport=transport)
    assert len(in_sync.setup()) == 3  # orders, payments and the dead-letter keeper
    assert transport.writes() == []


def test_off_makes_no_provisioning_calls_at_all() -> None:
    transport = CountingTransport()
    Worker([orders], settings=settings(), transport=transport).setup()
    transport.calls.clear()
    worker = Worker([orders], settings=settings(provisioning="off"), transport=transport)
    assert worker.setup() == []
    worker.start()
    worker.stop()
    assert transport.calls == []


def test_create_updates_dead_letter_policy_in_place_and_reports_immutable_conflicts() -> None:
    transport = CountingTransport()
    Worker([orders], settings=settings(), transport=transport).setup()
    changed = orders.with_options(max_delivery_attempts=9, enable_message_ordering=True)
    transport.calls.clear()
    [result, _keeper] = Worker([changed], settings=settings(), transport=transport).setup()
    assert result.changed == ("max_delivery_attempts",)
    assert "update_subscription orders max_delivery_attempts" in transport.calls
    assert result.conflicts and "enable_message_ordering" in result.conflicts[0]
    spec = transport.get_subscription("orders")
    assert spec is not None and spec.max_delivery_attempts == 9
    assert spec.enable_message_ordering is False  # cannot change in place


def test_plan_renders_creates_updates_conflicts_and_unchanged() -> None:
    transport = MemoryTransport()
    Worker([payments], settings=settings(), transport=transport).setup()
    wanted = prov.desired(
        [s.resolve(settings()) for s in (
            orders, payments.with_options(ack_deadline=45, backend_filter_by="attributes.x = \"1\"")
        )],
        settings(),
    )
    plan = prov.plan(transport, wanted)
    text = plan.render()
    assert "+ topic orders" in text and "+ topic orders-dead" in text
    assert "= topic payments" in text
    assert "+ subscription orders" in text and "dead_letter_topic: 'orders-dead'" in text
    assert "! subscription payments" in text and "ack_deadline: 30 -> 45" in text
    assert "filter" in text and "cannot change" in text
    assert "Plan: 4 to create, 0 to update, 1 conflict(s), 1 unchanged." in text
    assert not plan.in_sync
    assert "= topic payments" not in plan.render(show_unchanged=False)


def test_a_dead_letter_keeper_named_like_a_declared_subscription_on_another_topic() -> None:
    clash = sub(topic="audit", suffix="dead")(handler)  # named "audit-dead"
    victim = sub(topic="orders", dead_letter_topic="audit-dead")(handler)
    with pytest.raises(ProvisioningError, match="rename one of them"):
        prov.desired([s.resolve(settings()) for s in (clash, victim)], settings())
