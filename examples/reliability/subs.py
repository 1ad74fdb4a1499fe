"""Payments that must not be lost, shipments that must stay in order, and an audit
of what could not be processed.

* ``charge``: a flaky payment gateway times out now and then (retried in place
  by ``RetryMiddleware``); a payment with a negative amount can never succeed:
  after ``MAX_DELIVERY_ATTEMPTS`` deliveries Pub/Sub moves it to
  ``payments-dead-letter``, where ``audit`` picks it up. A payload that is not
  JSON goes there at once; ``audit`` cannot decode it either (relay logs it
  and acks it there), but the copy relay's keeper subscription
  ``payments-dead-letter`` holds stays for inspection.
* ``ship``: events of one order, published with ``ordering_key=order id``,
  are processed in order.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from relay import sub

logger = logging.getLogger("reliability")

#: What happened, for the example's test (a real app would write to its database).
charged: list[int] = []
shipped: dict[str, list[str]] = {}
audited: list[dict[str, str]] = []
_gateway_calls: dict[int, int] = {}
_lock = threading.Lock()


class GatewayTimeout(TimeoutError):
    pass


@sub(topic="payments")
def charge(data: dict[str, Any], *, delivery_attempt: int | None = None, **attrs: str) -> None:
    payment_id, amount = data["id"], data["amount"]
    if amount < 0:
        raise ValueError(f"payment {payment_id}: negative amount {amount}")
    with _lock:
        calls = _gateway_calls[payment_id] = _gateway_calls.get(payment_id, 0) + 1
    if data.get("flaky") and calls == 1:
        raise GatewayTimeout(f"payment {payment_id}: the gateway did not answer")
    with _lock:
        charged.append(payment_id)
    logger.info("payment %s charged (delivery %s, call %d)", payment_id, delivery_attempt, calls)


@sub(topic="shipments", enable_message_ordering=True, dead_letter_topic="")
def ship(data: dict[str, Any], **attrs: str) -> None:
    with _lock:
        shipped.setdefault(data["order"], []).append(data["event"])
    logger.info("order %s: %s", data["order"], data["event"])


@sub(topic="payments-dead-letter", dead_letter_topic="")
def audit(data: Any, **attrs: str) -> None:
    reason = attrs.get("relay_dead_letter_reason") or (
        f"failed {attrs.get('CloudPubSubDeadLetterSourceDeliveryCount')} deliveries"
    )
    with _lock:
        audited.append(dict(attrs))
    logger.warning("dead letter from %s: %s",
                   attrs.get("CloudPubSubDeadLetterSourceSubscription")
                   or attrs.get("relay_dead_letter_subscription"), reason)
