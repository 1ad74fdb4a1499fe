"""Pub/Sub push requests, parsed into relay's received-message shape.

Two formats reach a push endpoint (Pub/Sub's "push" and "payload unwrapping"
pages):

* **wrapped** (the default): the body is JSON,
  ``{"message": {"data": <base64>, "attributes": {...}, "messageId": ...,
  "publishTime": ..., "orderingKey": ...}, "subscription":
  "projects/p/subscriptions/s", "deliveryAttempt": n}``;
* **unwrapped** (``no_wrapper``): the body is the payload itself; with
  ``write_metadata`` the metadata comes as headers (``x-goog-pubsub-*``) and
  each attribute as a header of its own. HTTP header names are
  case-insensitive, so attribute names arrive lower-cased, and headers that
  HTTP servers and proxies add are not attributes (``NOT_ATTRIBUTES``).

``parse(headers, body)`` returns a ``PushMessage`` or raises ``BadPush`` (a
4xx: the request is not a push request relay can read). A ``PushMessage`` is
a ``ReceivedMessage``: its ``ack()``/``nack()`` record the verdict that the
HTTP response carries back to Pub/Sub.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any

from relay.transports.base import ReceivedMessage

#: The headers Pub/Sub writes for an unwrapped message with ``write_metadata``.
H_SUBSCRIPTION = "x-goog-pubsub-subscription-name"
H_MESSAGE_ID = "x-goog-pubsub-message-id"
H_PUBLISH_TIME = "x-goog-pubsub-publish-time"
H_DELIVERY_ATTEMPT = "x-goog-pubsub-delivery-attempt"
H_ORDERING_KEY = "x-goog-pubsub-ordering-key"

#: Headers of an unwrapped request that are HTTP's, not message attributes.
NOT_ATTRIBUTES = frozenset({
    "accept", "accept-encoding", "authorization", "connection", "content-length", "cookie",
    "content-type", "forwarded", "from", "host", "te", "traceparent", "tracestate",
    "transfer-encoding", "user-agent", "via",
})
#: Prefixes of headers that are never attributes (Google's, proxies').
NOT_ATTRIBUTE_PREFIXES = ("x-goog-", "x-cloud-", "x-forwarded-", "x-envoy-", "x-real-ip")


class BadPush(ValueError):
    """A request that is not a push request relay can read; answered with ``status``."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class PushMessage(ReceivedMessage):
    """One pushed message. ``ack()``/``nack()`` settle ``verdict`` (first call wins)."""

    __slots__ = (
        "attributes", "data", "delivery_attempt", "message_id", "ordering_key",
        "publish_time", "subscription", "verdict",
    )

    def __init__(
        self,
        data: bytes,
        attributes: Mapping[str, str],
        message_id: str,
        *,
        subscription: str,
        publish_time: datetime | None = None,
        delivery_attempt: int | None = None,
        ordering_key: str = "",
    ) -> None:
        self.data = data
        self.attributes = dict(attributes)
        self.message_id = message_id
        self.publish_time = publish_time
        self.delivery_attempt = delivery_attempt
        self.ordering_key = ordering_key
        #: As Pub/Sub named it: ``projects/p/subscriptions/s`` (or a short name).
        self.subscription = subscription
        #: Resolved with ``"ack"`` or ``"nack"`` once the pipeline settles the message
        #: (a dead letter settles later, from the publish's callback thread).
        self.verdict: Future[str] = Future()

    @property
    def short_subscription(self) -> str:
        return self.subscription.rsplit("/", 1)[-1]

    def ack(self) -> None:
        self._settle("ack")

    def nack(self) -> None:
        self._settle("nack")

    def _settle(self, how: str) -> None:
        with _SETTLE_LOCK:
            if not self.verdict.done():
                self.verdict.set_result(how)


_SETTLE_LOCK = threading.Lock()


def parse(headers: Mapping[str, str], body: bytes, *, subscription: str = "") -> PushMessage:
    """Parse a push request; ``headers`` keys lower-case.

    Unwrapped when Pub/Sub's metadata headers are there, or when the caller
    names the subscription (the last segment of the path: a route per
    subscription, for ``no_wrapper`` without metadata) and the body is not the
    wrapped envelope; wrapped otherwise. A wrapped request names its own
    subscription, whatever the path it was sent to (``/pubsub``, ``/push``...).
    """
    if H_MESSAGE_ID in headers or H_SUBSCRIPTION in headers:
        return parse_unwrapped(headers, body, subscription=subscription)
    envelope = _envelope(body)
    if envelope is None and subscription:
        return parse_unwrapped(headers, body, subscription=subscription)
    return parse_wrapped(body, envelope)


def _envelope(body: bytes) -> dict[str, Any] | None:
    """The wrapped envelope, if that is what the body is; None otherwise."""
    if body.lstrip()[:1] != b"{":
        return None
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(envelope, dict) and isinstance(envelope.get("message"), dict):
        return envelope
    return None


def parse_wrapped(body: bytes, envelope: dict[str, Any] | None = None) -> PushMessage:
    """The JSON envelope of a wrapped push request (``envelope``: already parsed)."""
    if envelope is None:
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPush(
                f"the body is not JSON ({exc}); a wrapped Pub/Sub push request is a JSON "
                "object with 'message' and 'subscription'"
            ) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise BadPush(
            "the body is JSON but not Pub/Sub's push format: expected an object with a "
            "'message' object and a 'subscription'"
        )
    subscription = envelope.get("subscription")
    if not isinstance(subscription, str) or not subscription:
        raise BadPush("the push request names no subscription ('subscription' is missing)")
    message: dict[str, Any] = envelope["message"]
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise BadPush(f"message.data must be a base64 string, got {type(raw).__name__}")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadPush(f"message.data is not valid base64 ({exc})") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise BadPush("message.attributes must be an object of string values")
    message_id = _text(message, "messageId", "message_id")
    published = _text(message, "publishTime", "publish_time")
    ordering_key = _text(message, "orderingKey", "ordering_key")
    return PushMessage(
        data, attributes, message_id,
        subscription=subscription,
        publish_time=parse_time(published) if published else None,
        delivery_attempt=_attempt(envelope.get("deliveryAttempt")),
        ordering_key=ordering_key,
    )


def parse_unwrapped(
    headers: Mapping[str, str], body: bytes, *, subscription: str = ""
) -> PushMessage:
    """An unwrapped push request: the body is the payload, metadata in headers."""
    name = headers.get(H_SUBSCRIPTION, "") or subscription
    if not name:
        raise BadPush(
            f"unwrapped push request without a subscription: enable write_metadata (the "
            f"{H_SUBSCRIPTION} header) or mount one route per subscription"
        )
    attributes = {
        key: value for key, value in headers.items()
        if key not in NOT_ATTRIBUTES and not key.startswith(NOT_ATTRIBUTE_PREFIXES)
    }
    published = headers.get(H_PUBLISH_TIME, "")
    return PushMessage(
        bytes(body), attributes, headers.get(H_MESSAGE_ID, ""),
        subscription=name,
        publish_time=parse_time(published) if published else None,
        delivery_attempt=_attempt(headers.get(H_DELIVERY_ATTEMPT)),
        ordering_key=headers.get(H_ORDERING_KEY, ""),
    )


def parse_time(text: str) -> datetime:
    """RFC 3339 as Pub/Sub writes it (``Z``, up to nanoseconds) to an aware datetime."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if "." in value:  # datetime takes at most microseconds
        head, _, rest = value.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadPush(f"publish time {text!r} is not an RFC 3339 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _text(message: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = message.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadPush(f"message.{key} must be a string, got {type(value).__name__}")
        return value
    return ""


def _attempt(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        attempt = int(value)
    except (TypeError, ValueError):
        raise BadPush(f"deliveryAttempt must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or attempt < 1:
        raise BadPush(f"deliveryAttempt must be 1 or more, got {value!r}")
    return attempt
