"""Fault test 5: publishing while Pub/Sub is unreachable.

The endpoint is a loopback port where nothing listens. Every message ends in
exactly one ``post_publish_failure`` (whether it was sent and timed out, or
turned away at the back-pressure limit), and what the publisher holds never
exceeds ``PUBLISHER_MAX_MESSAGES``: memory stays bounded however many are
published.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import relay
from relay.app import build_transport
from relay.emulator import free_port


class Watch(relay.BaseMiddleware):
    """Counts failures per message and samples the publisher's outstanding count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: dict[int, list[BaseException]] = {}
        self.successes = 0
        self.publisher: relay.Publisher | None = None
        self.peak = 0

    def pre_publish(self, message: relay.OutgoingMessage) -> None:
        assert self.publisher is not None
        with self.lock:
            self.peak = max(self.peak, self.publisher.outstanding[0])

    def post_publish_success(self, message: relay.OutgoingMessage, elapsed: float) -> None:
        with self.lock:
            self.successes += 1

    def post_publish_failure(
        self, message: relay.OutgoingMessage, exception: BaseException, elapsed: float
    ) -> None:
        with self.lock:
            self.failures.setdefault(message.data["n"], []).append(exception)


@pytest.mark.parametrize(
    ("behaviour", "count", "limit"), [("error", 300, 25), ("block", 60, 10)]
)
def test_every_publish_to_an_unreachable_endpoint_fails_visibly_and_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch, wait_for: Any, behaviour: str, count: int, limit: int,
    fault_transport: str,
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    watch = Watch()
    settings = relay.Settings.load(
        environ={}, gc_project_id="relay-tests", middleware=[watch],
        publisher_retry_timeout=0.5, publisher_max_messages=limit,
        publisher_limit_behavior=behaviour, transport=fault_transport,
    )
    transport = build_transport(settings)
    publisher = relay.Publisher(
        transport, settings=settings, middleware=relay.MiddlewareChain([watch])
    )
    watch.publisher = publisher
    raised = 0
    try:
        for n in range(count):
            try:
                publisher.publish("orders", {"n": n})
            except relay.PublishError:
                raised += 1
            assert publisher.outstanding[0] <= limit
        wait_for(lambda: len(watch.failures) == count, timeout=60,
                 what=f"a failure report for each of the {count} messages")
        wait_for(lambda: publisher.outstanding == (0, 0), what="the publisher to empty")
    finally:
        transport.close()
    assert watch.successes == 0
    assert sorted(watch.failures) == list(range(count))
    assert all(len(errors) == 1 for errors in watch.failures.values())  # exactly once each
    assert watch.peak <= limit
    if behaviour == "error":
        assert raised > 0  # the limit was reached and said so
