"""Found by ``manage.py runrelay`` because ``orders`` is an installed app."""

from __future__ import annotations

import logging
from typing import Any

from orders.models import Order
from relay import sub

logger = logging.getLogger(__name__)


@sub(topic="orders")
def store_order(data: dict[str, Any], **attrs: str) -> None:
    # Runs on a worker thread; DjangoDBMiddleware closes its connection afterwards.
    order, created = Order.objects.get_or_create(
        number=data["id"], defaults={"email": data["email"]}
    )
    logger.info("%s %s (from %s)", order, "stored" if created else "seen again",
                attrs.get("source", "?"))
