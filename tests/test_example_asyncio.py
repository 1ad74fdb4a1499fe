"""examples/asyncio_app: FastAPI publishing with ``apublish``, through its TestClient
on relay's memory transport; the async subscription through a real Worker."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from fastapi.testclient import TestClient

import relay
from examples.asyncio_app import subs
from examples.asyncio_app.app import app
from relay import Settings
from relay.testing import memory_app
from relay.transports.memory import MemoryTransport


def test_signup_routes_publish_and_the_async_subscription_handles_them(wait_for: Any) -> None:
    subs.SEEN.clear()
    with memory_app() as env:
        worker = env.worker([subs.welcome])  # subscribed before anything is published
        worker.start()
        client = TestClient(app)
        created = client.post("/signups", json={"email": "ada@example.com"})
        assert created.status_code == 201
        (record,) = env.published
        assert created.json() == {"message_id": record.message_id}

        batch = client.post("/signups/batch", json=[
            {"email": "bob@example.com", "plan": "pro"}, {"email": "cy@example.com"},
        ])
        assert batch.status_code == 200 and batch.json()["failed"] == []
        assert batch.json()["published"] == [r.message_id for r in env.published[1:]]
        try:
            wait_for(lambda: len(subs.SEEN) == 3, what="three signups handled")
        finally:
            worker.stop(timeout=5)
    assert sorted(subs.SEEN, key=lambda s: s[1]["email"]) == [
        ("web", {"email": "ada@example.com", "plan": "free"}),
        ("import", {"email": "bob@example.com", "plan": "pro"}),
        ("import", {"email": "cy@example.com", "plan": "free"}),
    ]


class NeverConfirms(MemoryTransport):
    """Pub/Sub that accepts messages and never confirms them."""

    def publish(self, topic: str, data: bytes, attributes: Any, *, ordering_key: str = "") -> Any:
        return Future()


def test_a_signup_that_cannot_be_queued_is_a_503_naming_the_cause() -> None:
    settings = Settings.load(GC_PROJECT_ID="relay-test", PUBLISHER_MAX_MESSAGES=1,
                             PUBLISHER_LIMIT_BEHAVIOR="error", PUBLISHER_TIMEOUT=0.2)
    previous = relay.set_app(relay.App(settings, transport=NeverConfirms()))
    try:
        client = TestClient(app)
        first = client.post("/signups", json={"email": "a@example.com"})
        assert first.status_code == 503, first.text
        assert "did not complete within 0.2 s" in first.json()["detail"]
        second = client.post("/signups", json={"email": "b@example.com"})  # the first holds room
        assert second.status_code == 503
        assert "PUBLISHER_MAX_MESSAGES=1" in second.json()["detail"]
    finally:
        relay.set_app(previous)
