"""Fixtures for the integration tests against the Pub/Sub emulator.

The emulator itself, ``make_grpc_transport`` (the default transport plus the
``AioWireLog`` of acks and nacks the emulator accepted), ``unique_name`` and
``wait_for`` come from ``tests/conftest.py``. ``tests/transports/test_pubsub_worker.py``
runs the Worker tests again on ``PubSubTransport``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from google.cloud import pubsub_v1

import relay
from relay.message import Message, Outcome, OutgoingMessage
from relay.subscription import Subscription
from relay.transports.base import Transport


class Recorder(relay.BaseMiddleware):
    """Records every hook call; thread-safe. ``events(hook)`` returns the argument tuples."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, tuple[Any, ...]]] = []

    def _add(self, hook: str, *args: Any) -> None:
        with self._lock:
            self._events.append((hook, args))

    def events(self, hook: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [args for name, args in self._events if name == hook]

    def outcomes(self) -> list[tuple[Message, Outcome]]:
        """(message, outcome) of every ``post_process_message``, in order."""
        return [(args[1], args[2]) for args in self.events("post_process_message")]

    def pre_publish(self, message: OutgoingMessage) -> None:
        self._add("pre_publish", message)

    def post_publish_success(self, message: OutgoingMessage, elapsed: float) -> None:
        self._add("post_publish_success", message, elapsed)

    def post_publish_failure(
        self, message: OutgoingMessage, exception: BaseException, elapsed: float
    ) -> None:
        self._add("post_publish_failure", message, exception, elapsed)

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        self._add("pre_process_message", subscription, message)

    def post_process_message_success(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        self._add("post_process_message_success", subscription, message, outcome)

    def post_process_message_failure(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        self._add("post_process_message_failure", subscription, message, outcome)

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        self._add("post_process_message", subscription, message, outcome)


@dataclass
class Harness:
    """One test's relay on the emulator: settings, transport, publisher, wire log."""

    transport: Transport
    wire: Any
    recorder: Recorder
    publisher: relay.Publisher
    workers: list[relay.Worker]

    @property
    def settings(self) -> relay.Settings:
        return self.transport.settings

    def worker(self, subscriptions: list[Subscription], **kwargs: Any) -> relay.Worker:
        """A Worker on this transport, provisioned and started; stopped after the test."""
        worker = relay.Worker(
            subscriptions, settings=self.settings, transport=self.transport, **kwargs
        )
        self.workers.append(worker)
        worker.start()
        return worker


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def harnesses(
    make_transport: Callable[..., Any], recorder: Recorder
) -> Iterator[Callable[..., Harness]]:
    """``make_harness`` on ``make_transport`` (``make_grpc_transport`` or
    ``make_pubsub_transport``); its workers stopped after the test."""
    made: list[Harness] = []

    def make(**settings: Any) -> Harness:
        settings.setdefault("middleware", [recorder])
        transport, wire = make_transport(**settings)
        chain = relay.MiddlewareChain.from_settings(transport.settings)
        publisher = relay.Publisher(transport, settings=transport.settings, middleware=chain)
        harness = Harness(transport, wire, recorder, publisher, [])
        made.append(harness)
        return harness

    yield make
    for harness in made:
        for worker in harness.workers:
            worker.stop(timeout=5)


@pytest.fixture
def make_harness(
    make_grpc_transport: Callable[..., Any], recorder: Recorder
) -> Iterator[Callable[..., Harness]]:
    """``make_harness(**settings)`` on the default transport; middleware defaults to
    ``[recorder]``."""
    yield from harnesses(make_grpc_transport, recorder)


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


@pytest.fixture
def admin(pubsub_emulator: Any) -> Iterator[Any]:
    """Google's own clients, to read back what provisioning did."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    yield SimpleNamespace(publisher=publisher, subscriber=subscriber)
    subscriber.close()
    publisher.transport.close()
