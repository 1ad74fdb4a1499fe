"""The subscription side: an ``async def`` handler, run on the worker's event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import relay

#: What the handler saw, for the example's test (a real service would store it).
SEEN: list[tuple[str, dict[str, Any]]] = []


@relay.sub(topic="signups")
async def welcome(data: dict[str, Any], **attrs: str) -> str:
    await asyncio.sleep(0)  # an awaitable call: an email API, a database driver
    SEEN.append((attrs.get("source", ""), data))
    return f"welcomed {data['email']}"
