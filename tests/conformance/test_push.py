"""Push delivery to an HTTP endpoint the test serves on 127.0.0.1.

The real service (https://cloud.google.com/pubsub/docs/push): each message is
POSTed in the wrapped JSON format, ``{"message": {"data": <base64>,
"attributes", "messageId", "message_id", "publishTime", "publish_time"},
"subscription": <name>}``, plus ``deliveryAttempt`` when the subscription has
a dead-letter policy and the message's ``orderingKey`` when it has one (the
JSON form of ``PubsubMessage``); 102, 200, 201, 202 and 204 acknowledge, any other
status is a nack and the message comes again. Pull on a push subscription
fails with FAILED_PRECONDITION ("This method is not supported for push
subscriptions with a defined push configuration").
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from tests.conformance.helpers import Clients, known_difference
from tests.support.push_endpoint import PushEndpoint, fail_first

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]


@pytest.fixture
def endpoint() -> Iterator[PushEndpoint]:
    """Answers 500 to the first push, 204 after."""
    made = PushEndpoint(fail_first())
    yield made
    made.close()


def test_a_push_is_wrapped_redelivered_after_500_and_acked_by_204(
    clients: Clients, endpoint: PushEndpoint, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    dead = clients.topic("dead")
    sub = clients.subscription(topic, push_config={"push_endpoint": endpoint.url},
                               dead_letter_policy={"dead_letter_topic": dead,
                                                   "max_delivery_attempts": 5})
    message_id = clients.publish(topic, b"pushed", colour="blue")
    wait_for(lambda: len(endpoint.bodies()) >= 2, timeout=15, what="a push and its redelivery")
    time.sleep(1.5)  # room for a third push; the 204 acked, so there must be none
    bodies = endpoint.bodies()
    assert len(bodies) == 2
    for body in bodies:
        assert body["subscription"] == sub
        message = body["message"]
        assert base64.b64decode(message["data"]) == b"pushed"
        assert message["attributes"] == {"colour": "blue"}
        assert message["messageId"] == message["message_id"] == message_id
        assert message["publishTime"] == message["publish_time"]
    if known_difference(clients.server, "google", "push-delivery-attempt"):
        assert ["deliveryAttempt" in body for body in bodies] == [False, False]
    else:
        assert [body["deliveryAttempt"] for body in bodies] == [1, 2]

    if known_difference(clients.server, "google", "push-pull"):
        assert clients.pull(sub, timeout=2.0) == []
    else:
        with pytest.raises(gexc.FailedPrecondition):
            clients.subscriber.pull(
                request={"subscription": sub, "max_messages": 1}, timeout=5, retry=None)


def test_a_wrapped_push_carries_the_ordering_key(
    clients: Clients, endpoint: PushEndpoint, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    clients.subscription(topic, push_config={"push_endpoint": endpoint.url},
                         enable_message_ordering=True)
    publisher = clients.ordered_publisher()
    publisher.publish(topic, b"keyed", ordering_key="k").result(timeout=30)
    wait_for(lambda: len(endpoint.bodies()) >= 2, timeout=15, what="a push and its redelivery")
    keys = [body["message"].get("orderingKey") for body in endpoint.bodies()[:2]]
    if known_difference(clients.server, "google", "push-ordering-key"):
        assert keys == [None, None]
    else:
        assert keys == ["k", "k"]
