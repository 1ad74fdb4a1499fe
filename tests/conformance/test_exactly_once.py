"""Exactly-once delivery.

The real service (https://cloud.google.com/pubsub/docs/exactly-once-delivery):
subscribers learn whether an ack succeeded; once a message is redelivered
(after a nack or an expired deadline) only its latest ack id can ack it, and
an ack with an earlier one fails. google-cloud-pubsub reports that failure as
``AcknowledgeError`` with ``AcknowledgeStatus.INVALID_ACK_ID``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud.pubsub_v1.subscriber.exceptions import AcknowledgeError, AcknowledgeStatus

from tests.conformance.helpers import Clients, Inbox

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]


def test_ack_with_response_succeeds_and_a_superseded_ack_id_fails(
    clients: Clients, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, enable_exactly_once_delivery=True)
    inbox = Inbox()
    clients.stream(sub, inbox.add)
    message_id = clients.publish(topic, b"once")

    wait_for(lambda: len(inbox) >= 1, timeout=10, what="the first delivery")
    first = inbox.all()[0][1]
    assert first.nack_with_response().result(timeout=10) == AcknowledgeStatus.SUCCESS
    wait_for(lambda: len(inbox) >= 2, timeout=10, what="the redelivery after the nack")
    second = inbox.all()[1][1]
    assert first.message_id == second.message_id == message_id
    assert first.ack_id != second.ack_id

    with pytest.raises(AcknowledgeError) as caught:
        first.ack_with_response().result(timeout=10)
    assert caught.value.error_code == AcknowledgeStatus.INVALID_ACK_ID
    assert second.ack_with_response().result(timeout=10) == AcknowledgeStatus.SUCCESS
    time.sleep(1.0)  # an acked message is not delivered again
    assert len(inbox) == 2
