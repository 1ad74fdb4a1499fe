"""The quickstart's handlers: one sync, one ``async def``, one with ``filter_by``.

``relay-cli run`` finds this module (it is named ``subs.py``), creates the
topics and subscriptions on Pub/Sub, and calls each handler with the decoded
JSON data and the message attributes as keyword arguments. A handler that
returns acks the message; one that raises nacks it, and Pub/Sub redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from relay import sub

logger = logging.getLogger("quickstart")


@sub(topic="orders")
def send_confirmation(data: dict[str, Any], **attrs: str) -> None:
    """A plain function runs on the worker's thread pool."""
    logger.info("order %s: confirmation sent to %s", data["id"], data["email"])


@sub(topic="orders", suffix="stock")
async def reserve_stock(data: dict[str, Any], **attrs: str) -> None:
    """An ``async def`` handler runs on the worker's event loop.

    Same topic as ``send_confirmation``: a second subscription (told apart by
    its suffix) gets its own copy of every order.
    """
    await asyncio.sleep(0.01)  # e.g. an HTTP call to the stock service
    logger.info("order %s: reserved %d x %s", data["id"], data["quantity"], data["item"])


def landscape_only(**attrs: str) -> bool:
    """Filters are called with the message attributes; False skips (and acks) the message."""
    return attrs.get("orientation") == "landscape"


@sub(topic="photos", filter_by=landscape_only)
def make_panorama(data: dict[str, Any], **attrs: str) -> None:
    logger.info("photo %s: panorama made (%s)", data["name"], attrs["orientation"])
