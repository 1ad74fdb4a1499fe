"""What the conformance scenarios share: the servers, the table of known
differences, and small receive helpers over the unmodified google-cloud-pubsub
client.

``KNOWN_DIFFERENCES`` lists every place where a server is known to differ from
the real Pub/Sub service. A scenario asserts the real service's behaviour; where
``known_difference(server, "google", scenario)`` is true it asserts the known
wrong behaviour instead, so the suite notices if Google fixes it (the branch
fails) or if relay's server regresses into it (the real-service branch fails).
A difference of relay's server is a bug to fix, never a row here.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

PROJECT = "conformance"
#: The servers the suite runs on: both, unless CONFORMANCE_SERVERS names fewer
#: (scripts/test.sh sets "relay" only outside CI on a machine without Google's
#: emulator, and says so loudly).
SERVERS = tuple(
    name for name in os.environ.get("CONFORMANCE_SERVERS", "relay,google").split(",")
    if name in ("relay", "google")
) or ("relay", "google")


class KnownDifference(NamedTuple):
    server: str
    scenario: str
    description: str


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        "google", "filters",
        "a subscription's filter is stored (GetSubscription returns it) but not applied: "
        "every message published to the topic is delivered, matching or not",
    ),
    KnownDifference(
        "google", "invalid-filter",
        "a filter that does not parse is accepted at CreateSubscription instead of being "
        "rejected with INVALID_ARGUMENT",
    ),
    KnownDifference(
        "google", "retry-backoff",
        "the first redelivery after a nack ignores the retry policy's minimum_backoff: "
        "it comes at once (measured < 1 s with minimum_backoff 2 s); the backoff applies "
        "only from the second redelivery",
    ),
    KnownDifference(
        "google", "killed-subscriber",
        "a streaming pull whose client was killed (SIGKILL) is still served: the dead "
        "stream takes a share of the messages published afterwards, which reach a live "
        "subscriber only when their ack deadline passes",
    ),
    KnownDifference(
        "google", "ordering-redelivery",
        "after a nack of an ordered message (k:2 of k:1..5), the later messages with its "
        "key are not delivered again after it: the emulator had handed out k:3..5 before "
        "the nack (the client acked them), then redelivers k:2 alone, so the key's messages "
        "end out of order (measured: 1, 2, 3, 4, 5, 2)",
    ),
    KnownDifference(
        "google", "attribute-limit",
        "a message with more than 100 attributes is accepted instead of being rejected "
        "with INVALID_ARGUMENT",
    ),
    KnownDifference(
        "google", "ordering-key-limit",
        "a message with an ordering key over 1,024 bytes is accepted instead of being "
        "rejected with INVALID_ARGUMENT",
    ),
    KnownDifference(
        "google", "modack-limit",
        "ModifyAckDeadline with a deadline over 600 s (601) is accepted instead of being "
        "rejected with INVALID_ARGUMENT (a negative one is rejected)",
    ),
    KnownDifference(
        "google", "delivery-attempt",
        "a subscription with a retry policy and no dead-letter policy gets delivery_attempt "
        "set (1, then 2 after a nack) instead of 0; with neither policy it is 0, as on Pub/Sub",
    ),
    KnownDifference(
        "google", "iam-policy",
        "GetIamPolicy on a topic or a subscription and TestIamPermissions on a topic answer "
        "UNIMPLEMENTED instead of the resource's policy and the permissions held",
    ),
    KnownDifference(
        "google", "push-delivery-attempt",
        "a push to a subscription with a dead-letter policy carries no deliveryAttempt "
        "in its JSON body (it still counts attempts and dead-letters after the maximum)",
    ),
    KnownDifference(
        "google", "push-pull",
        "Pull on a push subscription is served (it finds nothing, the pusher has the "
        "messages) instead of failing with FAILED_PRECONDITION",
    ),
    KnownDifference(
        "google", "push-ordering-key",
        "a wrapped push of a message with an ordering key has no orderingKey in its "
        "JSON body's message",
    ),
)


def known_difference(server: Server, name: str, scenario: str) -> bool:
    """True when ``server`` is ``name`` and the difference is in the table.

    A lookup of a difference missing from the table is a mistake in the suite,
    so it raises rather than quietly answering False."""
    if not any(d.server == name and d.scenario == scenario for d in KNOWN_DIFFERENCES):
        raise LookupError(f"no known difference ({name!r}, {scenario!r}) in KNOWN_DIFFERENCES")
    return server.name == name


@dataclass
class Server:
    """A running server the scenarios talk to: ``name`` is "relay" or "google"."""

    name: str
    address: str
    project: str = PROJECT


@dataclass
class Clients:
    """One test's clients and unique names; closed by the ``clients`` fixture."""

    server: Server
    publisher: pubsub_v1.PublisherClient
    subscriber: pubsub_v1.SubscriberClient
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    def name(self, base: str) -> str:
        return f"{base}-{uuid.uuid4().hex[:10]}"

    def topic(self, base: str = "topic") -> str:
        path = self.publisher.topic_path(self.server.project, self.name(base))
        self.publisher.create_topic(request={"name": path})
        return str(path)

    def subscription(self, topic: str, base: str = "sub", **fields: Any) -> str:
        path = self.subscriber.subscription_path(self.server.project, self.name(base))
        fields.setdefault("ack_deadline_seconds", 10)
        self.subscriber.create_subscription(request={"name": path, "topic": topic, **fields})
        return str(path)

    def ordered_publisher(self) -> pubsub_v1.PublisherClient:
        publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self._closers.append(lambda: publisher.stop())
        return publisher

    def publish(self, topic: str, data: bytes, **attrs: str) -> str:
        return str(self.publisher.publish(topic, data, **attrs).result(timeout=30))

    def stream(self, subscription: str, callback: Callable[[Any], None],
               **kwargs: Any) -> pubsub_v1.subscriber.futures.StreamingPullFuture:
        """``subscriber.subscribe``; the stream is cancelled at the end of the test."""
        future = self.subscriber.subscribe(subscription, callback, **kwargs)
        self._closers.append(lambda: _cancel(future))
        return future

    def pull(self, subscription: str, max_messages: int = 100,
             timeout: float = 2.0) -> list[Any]:
        """One synchronous Pull; [] when the server held it until ``timeout``."""
        try:
            response = self.subscriber.pull(
                request={"subscription": subscription, "max_messages": max_messages},
                timeout=timeout, retry=None,
            )
        except gexc.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def pull_until(self, subscription: str, done: Callable[[list[Any]], bool],
                   timeout: float = 10.0) -> list[Any]:
        """Pull repeatedly until ``done(everything received so far)`` or ``timeout``."""
        received: list[Any] = []
        deadline = time.monotonic() + timeout
        while not done(received) and time.monotonic() < deadline:
            received.extend(self.pull(subscription, timeout=min(2.0, _left(deadline))))
        return received

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):  # closing must not mask a test's failure
                closer()
        self.publisher.stop()
        self.subscriber.close()


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _cancel(future: pubsub_v1.subscriber.futures.StreamingPullFuture) -> None:
    future.cancel()
    with contextlib.suppress(Exception):  # a cancelled stream ends with CancelledError
        future.result(timeout=5)


class Inbox:
    """Thread-safe record of streaming-pull deliveries: (monotonic time, message)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._got: list[tuple[float, Any]] = []

    def add(self, message: Any) -> None:
        with self._lock:
            self._got.append((time.monotonic(), message))

    def all(self) -> list[tuple[float, Any]]:
        with self._lock:
            return list(self._got)

    def data(self) -> list[bytes]:
        return [m.data for _, m in self.all()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._got)


def known_differences_markdown() -> str:
    """The table for ``docs/``: ``python -m tests.conformance.helpers`` prints it."""
    rows = ["| server | scenario | how it differs from Pub/Sub |", "|---|---|---|"]
    rows += [f"| {d.server} | {d.scenario} | {d.description} |" for d in KNOWN_DIFFERENCES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(known_differences_markdown())
