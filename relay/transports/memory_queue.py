"""One subscription of the memory transport (``relay.transports.memory``): its
queue of messages, leases, ordering keys and redeliveries, and the messages it
hands out (``MemoryMessage``) and keeps a record of (``PublishedRecord``)."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from relay.errors import AckError
from relay.transports.base import ReceivedMessage, SubscriptionSpec

if TYPE_CHECKING:
    from relay.transports.memory import MemoryTransport


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
        settle: MemoryQueue | None = None,
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
class MemoryQueue:
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
