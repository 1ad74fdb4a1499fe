"""An in-process transport: the fake relay's tests use, shipped for yours too.

It behaves like Pub/Sub where relay depends on it: publishing returns a future
with a message id; a topic fans out to each of its subscriptions; a stream
delivers on its own thread within flow control; a nacked message is redelivered
with ``delivery_attempt`` increased after ``redelivery_delay`` seconds (or the
subscription's retry-policy minimum backoff scaled by ``backoff_scale``).

Differences, on purpose: no ack deadlines (an unsettled message stays leased
until its stream closes, then is redelivered), no server-side filters (the
filter string is stored, as the emulator does), and message ids are counters.
``published`` records every message sent, for assertions.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone

from relay.errors import TransportError
from relay.transports.base import (
    FlowControl,
    MessageCallback,
    ProvisionAction,
    ProvisionResult,
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
        "message_id",
        "ordering_key",
        "publish_time",
        "settled",
    )

    def __init__(
        self,
        record: PublishedRecord,
        delivery_attempt: int | None = 1,
        settle: Callable[[MemoryMessage, str], None] | None = None,
    ) -> None:
        self.data = record.data
        self.attributes = dict(record.attributes)
        self.message_id = record.message_id
        self.publish_time = record.publish_time
        self.ordering_key = record.ordering_key
        self.delivery_attempt = delivery_attempt
        self._settle = settle
        #: ``"ack"`` or ``"nack"`` once settled, else ``None``.
        self.settled: str | None = None

    def ack(self) -> None:
        self._done("ack")

    def nack(self) -> None:
        self._done("nack")

    def _done(self, how: str) -> None:
        if self.settled is not None:
            return
        self.settled = how
        if self._settle is not None:
            self._settle(self, how)


@dataclass
class _Sub:
    spec: SubscriptionSpec
    transport: MemoryTransport
    cond: threading.Condition = field(default_factory=threading.Condition)
    #: heap of (ready_at, seq, record, delivery_attempt)
    pending: list[tuple[float, int, PublishedRecord, int]] = field(default_factory=list)
    outstanding: dict[int, MemoryMessage] = field(default_factory=dict)
    outstanding_bytes: int = 0
    acked: int = 0
    nacked: int = 0

    def put(self, record: PublishedRecord, attempt: int = 1, delay: float = 0.0) -> None:
        with self.cond:
            heapq.heappush(
                self.pending, (time.monotonic() + delay, next(self.transport._seq), record, attempt)
            )
            self.cond.notify_all()

    def __call__(self, message: MemoryMessage, how: str) -> None:
        with self.cond:
            if self.outstanding.pop(id(message), None) is None:
                return
            self.outstanding_bytes -= len(message.data)
            if how == "ack":
                self.acked += 1
            else:
                self.nacked += 1
                record = self.transport._records[message.message_id]
                attempt = (message.delivery_attempt or 1) + 1
                heapq.heappush(
                    self.pending,
                    (
                        time.monotonic() + self.transport._redelivery_delay(self.spec),
                        next(self.transport._seq),
                        record,
                        attempt,
                    ),
                )
            self.cond.notify_all()


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
                        room = (
                            len(sub.outstanding) < flow.max_messages
                            and sub.outstanding_bytes < flow.max_bytes
                        )
                        if room and sub.pending and sub.pending[0][0] <= now:
                            break
                        wait = None
                        if room and sub.pending:
                            wait = sub.pending[0][0] - now
                        sub.cond.wait(timeout=wait if wait is not None else 0.5)
                    _, _, record, attempt = heapq.heappop(sub.pending)
                    message = MemoryMessage(record, attempt, sub)
                    sub.outstanding[id(message)] = message
                    sub.outstanding_bytes += len(record.data)
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
                    message.settled = "expired"
                    self._sub.outstanding.pop(id(message), None)
                    self._sub.outstanding_bytes -= len(message.data)
                    self._sub.put(
                        self._sub.transport._records[message.message_id],
                        (message.delivery_attempt or 1) + 1,
                    )

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
    ) -> None:
        self.auto_create_topics = auto_create_topics
        self._fixed_delay = redelivery_delay
        self._backoff_scale = backoff_scale
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
        self.closed = False

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

    # ----------------------------------------------------------- provisioning
    def ensure_topic(self, topic: str) -> bool:
        with self._lock:
            if topic in self.topics:
                return False
            self.topics[topic] = []
            return True

    def ensure_subscription(self, spec: SubscriptionSpec) -> ProvisionResult:
        with self._lock:
            if spec.topic not in self.topics:
                raise TransportError(
                    f"cannot create subscription {spec.name!r}: topic {spec.topic!r} does not exist"
                )
            existing = self.subscriptions.get(spec.name)
            if existing is None:
                self.subscriptions[spec.name] = _Sub(spec, self)
                self.topics[spec.topic].append(spec.name)
                return ProvisionResult(spec.name, ProvisionAction.CREATED)
            old = existing.spec
            if old.topic != spec.topic:
                raise TransportError(
                    f"subscription {spec.name!r} exists on topic {old.topic!r}, not {spec.topic!r}"
                )
            changed = tuple(
                name
                for name in ("ack_deadline", "retry_policy", "labels")
                if getattr(old, name) != getattr(spec, name)
            )
            conflicts: tuple[str, ...] = ()
            if old.filter != spec.filter:
                conflicts = (
                    f"filter is {old.filter!r} but the code declares {spec.filter!r}; "
                    "a filter cannot be changed in place: delete the subscription to apply it",
                )
            if changed:
                existing.spec = SubscriptionSpec(
                    spec.name, spec.topic, spec.ack_deadline, old.filter, spec.retry_policy,
                    spec.labels,
                )
                return ProvisionResult(spec.name, ProvisionAction.UPDATED, changed, conflicts)
            return ProvisionResult(spec.name, ProvisionAction.UNCHANGED, (), conflicts)

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
        """Counts for one subscription: pending, outstanding, acked, nacked."""
        sub = self.subscriptions[subscription]
        with sub.cond:
            return {
                "pending": len(sub.pending),
                "outstanding": len(sub.outstanding),
                "acked": sub.acked,
                "nacked": sub.nacked,
            }

    def close(self) -> None:
        for stream in self.streams:
            stream.close(timeout=5)
        self.closed = True
