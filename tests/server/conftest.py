"""relay's Pub/Sub server, started once for these tests, and google's clients on it.

Every test uses names of its own (``names``), so they share one server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.cloud import pubsub_v1

from relay.server import PubSubServer

PROJECT = "relay-server-tests"


@pytest.fixture(scope="session")
def pubsub_server() -> Iterator[PubSubServer]:
    with PubSubServer() as server:
        yield server


@dataclass
class Clients:
    publisher: Any
    subscriber: Any
    address: str

    def topic(self, base: str = "topic", **fields: Any) -> str:
        name = self.publisher.topic_path(PROJECT, f"{base}-{uuid.uuid4().hex[:8]}")
        self.publisher.create_topic(request={"name": name, **fields})
        return name

    def subscription(self, topic: str, base: str = "sub", **fields: Any) -> str:
        name = self.subscriber.subscription_path(PROJECT, f"{base}-{uuid.uuid4().hex[:8]}")
        self.subscriber.create_subscription(
            request={"name": name, "topic": topic, **fields}
        )
        return name

    def pull(self, subscription: str, max_messages: int = 100, wait: bool = False) -> list[Any]:
        response = self.subscriber.pull(
            request={"subscription": subscription, "max_messages": max_messages,
                     "return_immediately": not wait},
        )
        return list(response.received_messages)


@pytest.fixture
def clients(
    pubsub_server: PubSubServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Clients]:
    """google-cloud-pubsub's unmodified clients, pointed at the server."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_server.address)
    monkeypatch.setenv("PUBSUB_PROJECT_ID", PROJECT)
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    subscriber = pubsub_v1.SubscriberClient()
    yield Clients(publisher, subscriber, pubsub_server.address)
    publisher.stop()
    subscriber.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
