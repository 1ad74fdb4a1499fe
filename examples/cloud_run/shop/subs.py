"""The shop's handlers: one declaration each, pushed on Cloud Run, pulled locally.

On Cloud Run, ``SHOP_PUSH_ENDPOINT`` is the service's URL plus ``/pubsub``, and
``RELAY_PUSH_SERVICE_ACCOUNT`` the account Pub/Sub signs its pushes as: the
subscriptions are push subscriptions, and ``relay-cli plan --apply`` makes them so.
Unset (a laptop, CI), they are pull subscriptions, and ``relay-cli run`` consumes
them. The handlers are the same code either way.
"""

from __future__ import annotations

import logging
import os

from relay import UnrecoverableError, sub

logger = logging.getLogger("shop")

#: Where Pub/Sub pushes; None: pull.
PUSH_ENDPOINT = os.environ.get("SHOP_PUSH_ENDPOINT") or None
#: The account Pub/Sub signs push tokens as (the verifier checks the same setting).
PUSHER = os.environ.get("RELAY_PUSH_SERVICE_ACCOUNT") if PUSH_ENDPOINT else None


@sub(topic="orders", dead_letter_topic="orders-dead", max_delivery_attempts=5,
     ack_deadline=60, push_endpoint=PUSH_ENDPOINT, push_service_account=PUSHER)
def store_order(data: dict, **attrs: str) -> None:
    if "id" not in data:
        raise UnrecoverableError(f"an order without an id: {data!r}")
    logger.info("order %s stored (%s)", data["id"], attrs.get("source", "unknown"))
