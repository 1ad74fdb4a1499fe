"""Publish, pull, streaming pull, ack and nack: the everyday path.

The real service: an acked message is not delivered again; a nack (a
ModifyAckDeadline of 0) makes it available at once when the subscription has
no retry policy; ``delivery_attempt`` is only counted on subscriptions with a
dead-letter policy (https://cloud.google.com/pubsub/docs/handling-failures).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.conformance.helpers import Clients, Inbox

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]


def test_publish_pull_and_ack(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    message_id = clients.publish(topic, b"hello")

    got = clients.pull_until(sub, lambda r: len(r) >= 1)
    assert [(r.message.data, r.message.message_id) for r in got] == [(b"hello", message_id)]
    # Shorten the lease to 1 s, then ack: had the ack not been applied, the
    # message would come back a second later.
    subscriber = clients.subscriber
    subscriber.modify_ack_deadline(
        request={"subscription": sub, "ack_ids": [got[0].ack_id], "ack_deadline_seconds": 1}
    )
    subscriber.acknowledge(request={"subscription": sub, "ack_ids": [got[0].ack_id]})
    again = clients.pull_until(sub, lambda r: len(r) > 0, timeout=2.5)
    assert again == []


def test_streaming_pull_receives_every_message_exactly_once_when_acked(
    clients: Clients, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    inbox = Inbox()

    def callback(message: Any) -> None:
        inbox.add(message)
        message.ack()

    clients.stream(sub, callback)
    sent = [f"m{n}".encode() for n in range(50)]
    futures = [clients.publisher.publish(topic, data) for data in sent]
    ids = {f.result(timeout=30) for f in futures}
    wait_for(lambda: len(set(inbox.data())) == len(sent), timeout=15, what="all 50 messages")
    time.sleep(1.0)  # room for a duplicate to show up; acked messages must not
    counts = Counter(inbox.data())
    assert set(counts) == set(sent)
    assert max(counts.values()) == 1, {d: c for d, c in counts.items() if c > 1}
    assert {m.message_id for _, m in inbox.all()} == ids


def test_a_nacked_message_is_redelivered_at_once_without_a_retry_policy(
    clients: Clients, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    inbox = Inbox()

    def callback(message: Any) -> None:
        inbox.add(message)
        if len(inbox) == 1:
            message.nack()
        else:
            message.ack()

    clients.stream(sub, callback)
    message_id = clients.publish(topic, b"again")
    wait_for(lambda: len(inbox) >= 2, timeout=10, what="the redelivery after a nack")
    (t1, first), (t2, second) = inbox.all()[:2]
    assert first.message_id == second.message_id == message_id
    assert second.data == b"again"
    assert t2 - t1 < 5.0
    # No dead-letter policy: the service does not count delivery attempts.
    assert first.delivery_attempt is None and second.delivery_attempt is None


def test_attributes_and_ordering_key_round_trip(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, enable_message_ordering=True)
    publisher = clients.ordered_publisher()
    attrs = {"kind": "order", "emoji": "caf\u00e9 \u2615", "empty": ""}
    before = datetime.now(timezone.utc)
    first = publisher.publish(topic, b"\x00\xffbinary", ordering_key="customer-7", **attrs)
    second = publisher.publish(topic, b"", only="attributes")  # no ordering key
    ids = [first.result(timeout=30), second.result(timeout=30)]

    got = clients.pull_until(sub, lambda r: len(r) >= 2)
    by_id = {r.message.message_id: r.message for r in got}
    assert sorted(by_id) == sorted(ids)
    one, two = by_id[ids[0]], by_id[ids[1]]
    assert one.data == b"\x00\xffbinary"
    assert dict(one.attributes) == attrs
    assert one.ordering_key == "customer-7"
    assert two.data == b"" and dict(two.attributes) == {"only": "attributes"}
    assert two.ordering_key == ""
    published = one.publish_time  # a DatetimeWithNanoseconds, in UTC
    assert abs((published - before).total_seconds()) < 60
