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
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone

from relay.errors import AckError, TransportError
from relay.transports.base import (
    FlowControl,
    MessageCallback,
    ReceivedMessage,
    Stream,
    SubscriptionSpec,
    Transport,
)


@dataclass(frozen=True)
class PublishedRecord:
    """One message as it was published through the memory transport."""

    topic: str
    data: bytes
    attributes: Mapping[str, str]
    ordering_key: str
    message_id: str
    publish_time: datetime


class MemoryMessage(ReceivedMessage):
    __slots__ = (
        "_settle",
        "attributes",
        "data",
        "delivery_attempt",
        "leased_until",
        "message_id",
        "ordering_key",
        "publish_time",
        "settled",
    )

    def __init__(
        self,
        record: PublishedRecord,
        delivery_attempt: int | None = 1,
        settle: _Sub | None = None,
    ) -> None:
        self.data = record.data
        self.attributes = dict(record.attributes)
        self.message_id = record.message_id
        self.publish_time = record.publish_time
        self.ordering_key = record.ordering_key
        self.delivery_attempt = delivery_attempt
        self._settle = settle
        #: ``"ack"``, ``"nack"`` or ``"expired"`` once settled, else ``None``.
        self.settled: str | None = None
        self.leased_until = float("inf")

    def ack(self) -> None:
        self._done("ack")

    def nack(self) -> None:
        self._done("nack")

    def ack_with_response(self) -> Future[None]:
        future: Future[None] = Future()
        error = self._done("ack")
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        return future

    def _done(self, how: str) -> BaseException | None:
        if self._settle is None:
            if self.settled is None:
                self.settled = how
            return None
        return self._settle.settle(self, how)


@dataclass
class _Sub:
    spec: SubscriptionSpec
    transport: MemoryTransport
    cond: threading.Condition = field(default_factory=threading.Condition)
    #: heap of (ready_at, seq, record, delivery_attempt): unordered messages
    pending: list[tuple[float, int, PublishedRecord, int]] = field(default_factory=list)
    #: ordering key -> its messages in order (ordered subscriptions only)
    keyed: dict[str, deque[tuple[float, int, PublishedRecord, int]]] = field(
        default_factory=dict
    )
    #: ordering keys with a message outstanding: nothing else of theirs goes out
    busy: set[str] = field(default_factory=set)
    outstanding: dict[int, MemoryMessage] = field(default_factory=dict)
    outstanding_bytes: int = 0
    acked: int = 0
    nacked: int = 0
    expired: int = 0
    dead_lettered: int = 0
    #: No outstanding lease lapses before this (a lower bound): scans wait for it.
    next_lapse: float = float("inf")

    def _ordered(self, record: PublishedRecord) -> bool:
        return bool(self.spec.enable_message_ordering and record.ordering_key)

    def put(self, record: PublishedRecord, attempt: int = 1, delay: float = 0.0) -> None:
        with self.cond:
            entry = (time.monotonic() + delay, next(self.transport._seq), record, attempt)
            if self._ordered(record):
                queue = self.keyed.setdefault(record.ordering_key, deque())
                if attempt > 1:
                    queue.appendleft(entry)  # a redelivery goes before what followed it
                else:
                    queue.append(entry)
            else:
                heapq.heappush(self.pending, entry)
            self.cond.notify_all()

    def pending_count(self) -> int:
        return len(self.pending) + sum(len(q) for q in self.keyed.values())

    def next_ready(self, now: float) -> tuple[float | None, tuple[PublishedRecord, int] | None]:
        """(when the next message is due if none is now, the message due now). Under cond."""
        due: float | None = None
        if self.pending:
            if self.pending[0][0] <= now:
                _, _, record, attempt = heapq.heappop(self.pending)
                return None, (record, attempt)
            due = self.pending[0][0]
        for key, queue in self.keyed.items():
            if key in self.busy or not queue:
                continue
            if queue[0][0] <= now:
                _, _, record, attempt = queue.popleft()
                if not queue:
                    del self.keyed[key]
                self.busy.add(key)
                return None, (record, attempt)
            due = queue[0][0] if due is None else min(due, queue[0][0])
        return due, None

    def lease(self, record: PublishedRecord, attempt: int, lease_seconds: float) -> MemoryMessage:
        message = MemoryMessage(record, attempt, self)
        message.leased_until = time.monotonic() + lease_seconds
        self.next_lapse = min(self.next_lapse, message.leased_until)
        self.outstanding[id(message)] = message
        self.outstanding_bytes += len(record.data)
        return message

    def expire_overdue(self, now: float) -> float | None:
        """Take back messages whose lease lapsed; returns the next lapse time. Under cond.

        Scans the outstanding messages only once the earliest lease can have lapsed:
        a scan per delivery cost a Worker far more than the delivery itself, since
        it keeps up to FLOW_MAX_MESSAGES outstanding.
        """
        if now < self.next_lapse:
            return None if self.next_lapse == float("inf") else self.next_lapse
        soonest: float | None = None
        for message in list(self.outstanding.values()):
            if message.leased_until <= now:
                self._release(message, "expired")
            else:
                soonest = (
                    message.leased_until if soonest is None
                    else min(soonest, message.leased_until)
                )
        self.next_lapse = float("inf") if soonest is None else soonest
        return soonest

    def settle(self, message: MemoryMessage, how: str) -> BaseException | None:
        """Ack or nack a delivered message (once). Returns why an ack failed, if it did."""
        with self.cond:
            if message.settled is not None:
                if how == "ack" and message.settled == "expired":
                    # Too late: the message was handed back. Exactly-once delivery
                    # says so; otherwise the ack is lost silently, as on Pub/Sub.
                    return AckError(
                        f"message {message.message_id}: the lease had expired; the ack was "
                        "not applied and the message will be delivered again"
                    )
                return None
            failure = self.transport.fail_acks
            if how == "ack" and failure is not None:
                self._release(message, "nack")
                return failure
            self._release(message, how)
            return None

    def _release(self, message: MemoryMessage, how: str) -> None:
        if self.outstanding.pop(id(message), None) is None:
            return
        message.settled = how
        self.outstanding_bytes -= len(message.data)
        if message.ordering_key:
            self.busy.discard(message.ordering_key)
        if how == "ack":
            self.acked += 1
        else:
            if how == "nack":
                self.nacked += 1
            else:
                self.expired += 1
            self._redeliver(message)
        self.cond.notify_all()

    def _redeliver(self, message: MemoryMessage) -> None:
        record = self.transport._records[message.message_id]
        attempt = (message.delivery_attempt or 1) + 1
        spec = self.spec
        if spec.dead_letter_topic and attempt > spec.max_delivery_attempts:
            self.dead_lettered += 1
            self.transport._dead_letter(spec, record, attempt - 1)
            return
        self.put(record, attempt, self.transport._redelivery_delay(spec))


class MemoryStream(Stream):
    def __init__(self, sub: _Sub, on_message: MessageCallback, flow: FlowControl) -> None:
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
        self.subscriptions: dict[str, _Sub] = {}
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
            self.subscriptions[spec.name] = _Sub(spec, self)
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
