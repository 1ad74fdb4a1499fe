"""Parsing both push formats into relay's received-message shape."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from relay.push.envelope import BadPush, PushMessage, parse, parse_time

from .helpers import envelope


def test_the_wrapped_format_maps_every_field() -> None:
    body = json.loads(envelope({"a": 1}, attributes={"k": "v"}, attempt=4, message_id="9"))
    body["message"]["orderingKey"] = "cust-1"
    message = parse({}, json.dumps(body).encode())
    assert message.data == b'{"a": 1}'
    assert message.attributes == {"k": "v"}
    assert message.message_id == "9"
    assert message.delivery_attempt == 4
    assert message.ordering_key == "cust-1"
    assert message.publish_time == datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert message.subscription == "projects/relay-test/subscriptions/orders"
    assert message.short_subscription == "orders"


def test_snake_case_fields_are_read_too() -> None:
    body = {
        "message": {"data": base64.b64encode(b"x").decode(), "message_id": "1",
                    "publish_time": "2026-01-02T03:04:05Z"},
        "subscription": "s",
    }
    message = parse({}, json.dumps(body).encode())
    assert (message.message_id, message.delivery_attempt) == ("1", None)
    assert message.publish_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_a_wrapped_request_names_its_subscription_whatever_the_path() -> None:
    # Pushed to https://host/pubsub, an app mounted at / sees the route "pubsub":
    # the envelope, not the path, says which subscription it is.
    message = parse({}, envelope({"a": 1}), subscription="pubsub")
    assert message.short_subscription == "orders" and message.data == b'{"a": 1}'


def test_a_route_names_the_subscription_of_an_unwrapped_body() -> None:
    for body in (b'{"order": 7}', b"plain text", b'{"message": "not an object"}'):
        message = parse({}, body, subscription="orders")
        assert (message.short_subscription, message.data) == ("orders", body)


def test_unwrapped_headers_become_metadata_and_attributes() -> None:
    headers = {
        "x-goog-pubsub-subscription-name": "projects/p/subscriptions/orders",
        "x-goog-pubsub-message-id": "77",
        "x-goog-pubsub-delivery-attempt": "2",
        "content-type": "application/json", "user-agent": "APIs-Google", "authorization": "x",
        "x-forwarded-for": "1.2.3.4", "x-cloud-trace-context": "t",
        "kind": "new",
    }
    message = parse(headers, b"raw payload")
    assert message.data == b"raw payload"
    assert message.attributes == {"kind": "new"}
    assert (message.message_id, message.delivery_attempt) == ("77", 2)
    assert message.short_subscription == "orders"


def test_the_first_settlement_wins() -> None:
    message = PushMessage(b"", {}, "1", subscription="s")
    message.nack()
    message.ack()
    assert message.verdict.result(0) == "nack"
    assert message.ack_with_response().result(0) is None


@pytest.mark.parametrize(
    ("text", "micro"), [("2026-12-05T10:00:00.1Z", 100000), ("2026-12-05T10:00:00Z", 0),
                        ("2026-12-05T10:00:00.123456789+00:00", 123456)],
)
def test_publish_times_with_any_precision(text: str, micro: int) -> None:
    assert parse_time(text).microsecond == micro


def test_errors_carry_status_and_reason() -> None:
    with pytest.raises(BadPush) as caught:
        parse({}, b"[]")
    assert caught.value.status == 400 and "push format" in caught.value.reason
    with pytest.raises(BadPush, match="write_metadata"):
        parse({"x-goog-pubsub-message-id": "1"}, b"x")
    with pytest.raises(BadPush, match="1 or more"):
        parse({}, b'{"message": {}, "subscription": "s", "deliveryAttempt": 0}')
