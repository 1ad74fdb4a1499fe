"""A FastAPI service publishing with relay's async API.

``POST /signups`` publishes one message and answers with its Pub/Sub id once
Pub/Sub confirmed it; ``POST /signups/batch`` publishes many and reports each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import relay


class Signup(BaseModel):
    email: str
    plan: str = "free"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    relay.reset()  # flush and close the process-wide publisher on shutdown


app = FastAPI(lifespan=lifespan)


@app.post("/signups", status_code=201)
async def create_signup(signup: Signup) -> dict[str, str]:
    try:
        message_id = await relay.apublish("signups", signup.model_dump(), source="web")
    except relay.PublishError as exc:
        raise HTTPException(503, f"not queued, try again: {exc.cause}") from exc
    return {"message_id": message_id}


@app.post("/signups/batch")
async def create_signups(signups: list[Signup]) -> dict[str, Any]:
    results = await relay.apublish_many(
        "signups",
        [relay.Item(s.model_dump(), source="import") for s in signups],
        raise_exception=False,
    )
    return {
        "published": [r.message_id for r in results if r.ok],
        "failed": [{"index": r.index, "error": str(r.error)} for r in results.failed],
    }
