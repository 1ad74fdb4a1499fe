"""relay tasks are discovered in installed apps' ``tasks`` modules too."""

from __future__ import annotations

from orders.models import Order
from relay import task


@task
def count_orders() -> int:
    return int(Order.objects.count())
