"""Django tasks (``@task`` from Django's task framework) run by relay's worker."""

from __future__ import annotations

import asyncio
from typing import Any

try:  # Django 6.0+
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task


class CardDeclined(Exception):
    """A task's own exception: its class path is recorded with the failure."""


@task
def invoice_total(amounts: list[int], *, tax: int = 0) -> dict[str, int]:
    return {"total": sum(amounts) + tax}


@task(queue_name="reports")
async def monthly_report(month: str) -> str:
    await asyncio.sleep(0)
    return f"report for {month}"


@task
def charge(card: str) -> None:
    raise CardDeclined(f"card {card} declined")


@task(takes_context=True)
def attempt_number(context: Any) -> int:
    return int(context.attempt)


not_a_task = "billing.tasks.not_a_task is a string"
