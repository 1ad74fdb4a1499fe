"""The shop's subscriptions: found by the Django app in this installed app's ``subs``."""

from __future__ import annotations

import os
import threading
from typing import Any

from relay import sub
from tests.contrib.django.project.shop.models import Order


@sub(topic="shop-orders")
def store_order(data: dict[str, Any], **attrs: str) -> int:
    """Stores the order as a row (on a handler thread, with its own connection)."""
    order = Order.objects.create(
        number=data["number"], handled_by=threading.current_thread().name, pid=os.getpid()
    )
    return int(order.pk)
