"""The observability example's handlers: a chain of two topics, and a filter.

``bill_order`` publishes an invoice while it handles an order, so the trace
goes on: ``send orders`` -> ``process observability-orders`` -> ``send
invoices`` -> ``process observability-invoices``, one trace across both topics.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opentelemetry import trace

import relay
from relay import sub

logger = logging.getLogger("observability")


def trace_id() -> str:
    """The id of the trace the handler runs in (TracingMiddleware made it current)."""
    return f"{trace.get_current_span().get_span_context().trace_id:032x}"


@sub(topic="orders")
def bill_order(data: dict[str, Any], **attrs: str) -> str:
    """Publishing from a handler continues the message's trace."""
    relay.publish("invoices", {"order": data["id"], "amount": data["amount"]})
    logger.info("order %s billed (trace %s)", data["id"], trace_id())
    return f"invoice for order {data['id']}"


@sub(topic="invoices")
async def send_invoice(data: dict[str, Any], **attrs: str) -> None:
    """An ``async def`` handler is traced the same way, on the worker's event loop."""
    await asyncio.sleep(0.01)  # e.g. an HTTP call to the mail service
    logger.info("invoice for order %s sent (trace %s)", data["order"], trace_id())


@sub(topic="orders", suffix="priority",
     filter_by=lambda **attrs: attrs.get("priority") == "high")
def expedite(data: dict[str, Any], **attrs: str) -> None:
    """Other orders are skipped: ``relay.outcome="skipped"`` in spans and metrics."""
    logger.info("order %s expedited (trace %s)", data["id"], trace_id())
