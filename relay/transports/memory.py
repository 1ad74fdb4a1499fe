"""An in-process transport: the fake relay's tests use, shipped for yours too.

It behaves like Pub/Sub where relay depends on it: publishing returns a future
with a message id; a topic fans out to each of its subscriptions; a stream
delivers on its own thread within flow control; a nacked message is redelivered
with ``delivery_attempt`` increased after ``redelivery_delay`` seconds (or the
subscription's retry-policy minimum backoff scaled by ``backoff_scale``).

Where the subscription asks for them, it also does what Pub/Sub does:

* ``enable_message_ordering``: one message per ordering key is outstanding at
  a time, in publish order; a nacked one is redelivered before its successors.
* a dead-letter topic: the delivery that would exceed ``max_delivery_attempts``
  is published to the dead-letter topic instead, with the attributes Pub/Sub
  adds (``CloudPubSubDeadLetterSourceSubscription`` and friends).
* the lease: a message unsettled for ``FlowControl.max_lease_duration``
  seconds is taken back and redelivered; an ack after that is lost (and
  ``ack_with_response()`` fails with ``AckError``, as with exactly-once
  delivery).

Differences, on purpose: ``delivery_attempt`` is always set (Pub/Sub sets it
only with a dead-letter policy), no server-side filters (the filter string is
stored, as the emulator does), a failed ordered publish does not pause its
key, and message ids are counters. ``published`` records every message sent,
for assertions; ``fail_publishes``/``fail_acks`` make publishes or acks fail.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import datetime, timezone

from relay.errors import TransportError
from relay.transports.base import (
    FlowControl,
    MessageCallback,
    Stream,
    SubscriptionSpec,
    Transport,
)
from relay.transports.memory_queue import MemoryMessage, MemoryQueue, PublishedRecord

__all__ = ["MemoryMessage", "MemoryStream", "MemoryTransport", "PublishedRecord"]

class MemoryStream(Stream):
    def __init__(self, sub: MemoryQueue, on_message: MessageCallback, flow: FlowControl) -> None:
        self._sub = sub
        self._on_message = on_message
        self._flow = flow
        self._cancelled = False
        self._closed = threading.Event()
        self._close_called = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"relay-memory-{sub.spec.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        sub, flow = self._sub, self._flow
        try:
            while True:
                with sub.cond:
                    while True:
                        if self._cancelled:
                            return
                        now = time.monotonic()
                        lapse = sub.expire_overdue(now)
                        room = (
                            len(sub.outstanding) < flow.max_messages
                            and sub.outstanding_bytes < flow.max_bytes
                        )
                        due, ready = sub.next_ready(now) if room else (None, None)
                        if ready is not None:
                            break
                        wake = [t for t in (due, lapse) if t is not None]
                        sub.cond.wait(timeout=min([0.5, *(t - now for t in wake)]))
                    record, attempt = ready
                    lease = sub.transport.lease_duration or flow.max_lease_duration
                    message = sub.lease(record, attempt, lease)
                self._on_message(message)
        except BaseException as exc:  # a callback bug ends the stream, visibly
            self._error = exc
        finally:
            self._closed.set()

    def cancel(self) -> None:
        with self._sub.cond:
            self._cancelled = True
            self._sub.cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        self.cancel()
        self._thread.join(timeout)
        self._close_called = True
        # Like Pub/Sub, what was delivered but never settled comes back.
        with self._sub.cond:
            for message in list(self._sub.outstanding.values()):
                if message._settle is self._sub and message.settled is None:
                    self._sub._release(message, "expired")

    def done(self) -> bool:
        # cancel() alone ends the delivery thread but not the stream (the
        # Worker's supervisor would take that for a failure): ended means
        # closed, or failed.
        return self._closed.is_set() and (self._close_called or self._error is not None)

    def exception(self) -> BaseException | None:
        return self._error

    def fail(self, error: BaseException) -> None:
        """Test hook: end the stream as if the connection broke."""
        self._error = error
        self.cancel()


class MemoryTransport(Transport):
    """See the module docstring. Thread-safe."""

    def __init__(
        self,
        *,
        auto_create_topics: bool = True,
        redelivery_delay: float | None = 0.01,
        backoff_scale: float = 0.0,
        lease_duration: float | None = None,
    ) -> None:
        """``lease_duration``: seconds a delivered message stays leased, overriding
        the stream's ``max_lease_duration`` (tests use it to make leases lapse fast)."""
        self.auto_create_topics = auto_create_topics
        self._fixed_delay = redelivery_delay
        self._backoff_scale = backoff_scale
        self.lease_duration = lease_duration
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.topics: dict[str, list[str]] = {}
        self.subscriptions: dict[str, MemoryQueue] = {}
        self.published: list[PublishedRecord] = []
        self._records: dict[str, PublishedRecord] = {}
        self.streams: list[MemoryStream] = []
        #: Set to an exception to make every publish fail with it (for tests).
        self.fail_publishes: BaseException | None = None
        #: Set to an exception to make every ack fail with it: the message is
        #: redelivered, and ``ack_with_response()`` reports the exception.
        self.fail_acks: BaseException | None = None
        self.closed = False
        #: Topic IAM bindings, ``{topic: {role: {member, ...}}}``, for
        #: ``topic_iam_policy`` (tests set them; nothing enforces them).
        self.iam_policies: dict[str, dict[str, set[str]]] = {}

    def _redelivery_delay(self, spec: SubscriptionSpec) -> float:
        if self._fixed_delay is not None:
            return self._fixed_delay
        if spec.retry_policy is None:
            return 0.0
        return spec.retry_policy.minimum_backoff * self._backoff_scale

    # ------------------------------------------------------------- publishing
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        future: Future[str] = Future()
        if self.fail_publishes is not None:
            future.set_exception(self.fail_publishes)
            return future
        with self._lock:
            if topic not in self.topics:
                if not self.auto_create_topics:
                    future.set_exception(TransportError(f"topic {topic!r} does not exist"))
                    return future
                self.topics[topic] = []
            message_id = str(next(self._ids))
            record = PublishedRecord(
                topic, bytes(data), dict(attributes), ordering_key, message_id,
                datetime.now(timezone.utc),
            )
            self.published.append(record)
            self._records[message_id] = record
            targets = [self.subscriptions[name] for name in self.topics[topic]]
        for target in targets:
            target.put(record)
        future.set_result(message_id)
        return future

    def _dead_letter(self, spec: SubscriptionSpec, record: PublishedRecord, attempts: int) -> None:
        attributes = dict(record.attributes)
        attributes.update({
            "CloudPubSubDeadLetterSourceSubscription": spec.name,
            "CloudPubSubDeadLetterSourceDeliveryCount": str(attempts),
            "CloudPubSubDeadLetterSourceTopicPublishTime": record.publish_time.isoformat(),
        })
        # Like Pub/Sub, a dead letter to a missing topic is lost: provisioning
        # creates dead-letter topics so that does not happen.
        self.publish(spec.dead_letter_topic, record.data, attributes,
                     ordering_key=record.ordering_key)

    # ----------------------------------------------------------- provisioning
    def ensure_topic(self, topic: str) -> bool:
        with self._lock:
            if topic in self.topics:
                return False
            self.topics[topic] = []
            return True

    def topic_exists(self, topic: str) -> bool:
        with self._lock:
            return topic in self.topics

    def get_subscription(self, name: str) -> SubscriptionSpec | None:
        with self._lock:
            existing = self.subscriptions.get(name)
            return None if existing is None else existing.spec

    def create_subscription(self, spec: SubscriptionSpec) -> bool:
        with self._lock:
            if spec.topic not in self.topics:
                raise TransportError(
                    f"cannot create subscription {spec.name!r}: topic {spec.topic!r} does not exist"
                )
            if spec.name in self.subscriptions:
                return False
            self.subscriptions[spec.name] = MemoryQueue(spec, self)
            self.topics[spec.topic].append(spec.name)
            return True

    def delete_subscription(self, name: str) -> bool:
        with self._lock:
            existing = self.subscriptions.pop(name, None)
            if existing is None:
                return False
            self.topics[existing.spec.topic].remove(name)
        for stream in self.streams:  # like Pub/Sub: a stream on it ends with an error
            if stream._sub is existing and not stream.done():
                stream.fail(TransportError(f"subscription {name!r} was deleted"))
        return True

    def update_subscription(self, spec: SubscriptionSpec, fields: tuple[str, ...]) -> None:
        with self._lock:
            existing = self.subscriptions.get(spec.name)
            if existing is None:
                raise TransportError(f"cannot update subscription {spec.name!r}: it does not exist")
            existing.spec = dataclasses.replace(
                existing.spec, **{name: getattr(spec, name) for name in fields}
            )

    def topic_iam_policy(self, topic: str) -> dict[str, frozenset[str]]:
        with self._lock:
            if topic not in self.topics:
                raise TransportError(f"topic {topic!r} does not exist")
            bindings = self.iam_policies.get(topic, {})
            return {role: frozenset(members) for role, members in bindings.items()}

    # -------------------------------------------------------------- consuming
    def subscribe(
        self, subscription: str, on_message: MessageCallback, flow_control: FlowControl
    ) -> Stream:
        sub = self.subscriptions.get(subscription)
        if sub is None:
            raise TransportError(
                f"subscription {subscription!r} does not exist; run the worker's setup() first"
            )
        stream = MemoryStream(sub, on_message, flow_control)
        self.streams.append(stream)
        return stream

    def stats(self, subscription: str) -> dict[str, int]:
        """Counts for one subscription: pending, outstanding, acked, nacked,
        expired (leases that lapsed) and dead_lettered."""
        sub = self.subscriptions[subscription]
        with sub.cond:
            return {
                "pending": sub.pending_count(),
                "outstanding": len(sub.outstanding),
                "acked": sub.acked,
                "nacked": sub.nacked,
                "expired": sub.expired,
                "dead_lettered": sub.dead_lettered,
            }

    def close(self) -> None:
        for stream in self.streams:
            stream.close(timeout=5)
        self.closed = True
