"""The shop's relay tasks: found by the Django app in this installed app's ``tasks``."""

from __future__ import annotations

from relay import task
from tests.contrib.django.project.shop.models import Order


@task(topic="shop-count-orders")
def count_orders() -> int:
    return int(Order.objects.count())
