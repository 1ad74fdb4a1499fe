"""Dead-letter policy and retry policy.

The real service (https://cloud.google.com/pubsub/docs/handling-failures,
https://cloud.google.com/pubsub/docs/subscription-retry-policy): with a
dead-letter policy it counts delivery attempts (1 + nacks + expired
deadlines) and reports them as ``delivery_attempt``, which without one is 0
(``ReceivedMessage.delivery_attempt`` in google/pubsub/v1/pubsub.proto), a
retry policy or not; after
``max_delivery_attempts`` it publishes the message to the dead-letter topic
with its data and attributes plus ``CloudPubSubDeadLetterSourceDeliveryCount``,
``CloudPubSubDeadLetterSourceSubscription`` (the subscription's id),
``CloudPubSubDeadLetterSourceSubscriptionProject`` and
``CloudPubSubDeadLetterSourceTopicPublishTime``. With a retry policy, the
first redelivery after a failure waits ``minimum_backoff``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.conformance.helpers import PROJECT, Clients, Inbox, known_difference

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]


def test_after_max_delivery_attempts_a_nacked_message_goes_to_the_dead_letter_topic(
    clients: Clients, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    dead_topic = clients.topic("dead")
    dead_sub = clients.subscription(dead_topic, "dead-sub")
    sub = clients.subscription(topic, dead_letter_policy={
        "dead_letter_topic": dead_topic, "max_delivery_attempts": 5,
    })
    inbox = Inbox()

    def callback(message: Any) -> None:
        inbox.add(message)
        message.nack()

    clients.stream(sub, callback)
    message_id = clients.publish(topic, b"poison", origin="test")
    dead = clients.pull_until(dead_sub, lambda r: len(r) >= 1, timeout=20)
    assert len(dead) == 1, [r.message for r in dead]
    forwarded = dead[0].message
    time.sleep(0.5)  # room for a sixth delivery; there must be none
    assert [m.delivery_attempt for _, m in inbox.all()] == [1, 2, 3, 4, 5]
    assert {m.message_id for _, m in inbox.all()} == {message_id}

    assert forwarded.data == b"poison"
    attrs = dict(forwarded.attributes)
    assert attrs.pop("origin") == "test"
    publish_time = attrs.pop("CloudPubSubDeadLetterSourceTopicPublishTime")
    datetime.fromisoformat(publish_time.replace("Z", "+00:00"))  # a timestamp
    assert attrs == {
        "CloudPubSubDeadLetterSourceDeliveryCount": "5",
        "CloudPubSubDeadLetterSourceSubscription": sub.rsplit("/", 1)[-1],
        "CloudPubSubDeadLetterSourceSubscriptionProject": PROJECT,
    }


def test_the_first_redelivery_waits_for_the_retry_policy_minimum_backoff(
    clients: Clients, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, retry_policy={
        "minimum_backoff": {"seconds": 2}, "maximum_backoff": {"seconds": 2},
    })
    inbox = Inbox()

    def callback(message: Any) -> None:
        inbox.add(message)
        if len(inbox) == 1:
            message.nack()
        else:
            message.ack()

    clients.stream(sub, callback)
    clients.publish(topic, b"later")
    wait_for(lambda: len(inbox) >= 2, timeout=15, what="the redelivery")
    (t1, first), (t2, second) = inbox.all()[:2]
    assert first.message_id == second.message_id
    waited = t2 - t1
    if known_difference(clients.server, "google", "retry-backoff"):
        assert waited < 1.0, f"redelivered after {waited:.2f} s"
        return
    assert 1.8 <= waited < 6.0, f"redelivered after {waited:.2f} s"


def test_delivery_attempt_is_set_only_with_a_dead_letter_policy(clients: Clients) -> None:
    topic = clients.topic()
    plain = clients.subscription(topic, "plain")
    retrying = clients.subscription(topic, "retrying", retry_policy={
        "minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 1},
    })
    clients.publish(topic, b"counted?")

    def attempts(sub: str) -> list[int]:
        """delivery_attempt of the first delivery and of its redelivery after a nack."""
        seen: list[int] = []
        for _ in range(2):
            (received,) = clients.pull_until(sub, lambda r: len(r) >= 1)
            seen.append(received.delivery_attempt)
            clients.subscriber.modify_ack_deadline(request={
                "subscription": sub, "ack_ids": [received.ack_id], "ack_deadline_seconds": 0})
        return seen

    assert attempts(plain) == [0, 0]
    if known_difference(clients.server, "google", "delivery-attempt"):
        assert attempts(retrying) == [1, 2]
        return
    assert attempts(retrying) == [0, 0]
