"""One subscription's messages: ready, delayed by a retry policy, and leased.

A ``Queue`` is guarded by its own condition (``cond``): its methods take it
themselves, except those whose names end in ``_locked``, which expect the
caller to hold it (a stream waits on ``cond`` and takes in one go). Nothing
here takes another queue's lock: dead letters to forward are returned to the
caller (the broker), which publishes them after letting go.

The rules this implements (Pub/Sub's, where Google's emulator 0.8.20 differs):

* A message is leased to one delivery at a time, under an ack id of its own,
  until its deadline; an ack settles it, a modack moves the deadline, a modack
  of 0 (a nack) or a lapsed deadline releases it.
* A released message is redelivered at once, or with a retry policy after
  ``min(maximum_backoff, minimum_backoff * 2 ** (attempts - 1))``, from the
  first redelivery on.
* With a dead-letter policy, a message released after ``max_delivery_attempts``
  deliveries is forwarded (returned to the caller) instead, and settled here.
* With message ordering, one message per ordering key is out (ready, leased or
  waiting for its backoff) at a time; the rest of that key waits in order.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class MessageFilter(Protocol):
    def matches(self, attributes: Any) -> bool: ...


@dataclass(frozen=True)
class Config:
    """What delivery needs from a subscription's settings."""

    name: str
    ack_deadline: int = 10
    filter: MessageFilter | None = None
    #: (minimum, maximum) seconds, or None: redeliver at once.
    backoff: tuple[float, float] | None = None
    dead_letter_topic: str = ""
    max_delivery_attempts: int = 5
    ordering: bool = False
    exactly_once: bool = False
    #: The subscription pushes (``relay.server.push``): Pull and StreamingPull refuse it.
    push: bool = False


class Entry:
    """One published message as one subscription holds it."""

    __slots__ = ("attempts", "message", "ordering_key", "payload", "size")

    def __init__(self, message: Any, payload: bytes, ordering_key: str) -> None:
        self.message = message  # the PubsubMessage (shared; never changed)
        self.payload = payload  # its serialised form (shared)
        self.size = len(payload)
        self.ordering_key = ordering_key
        self.attempts = 0


class Holder:
    """Who took leases: a streaming pull's flow control (a unary Pull has none)."""

    __slots__ = ("max_bytes", "max_messages", "outstanding", "outstanding_bytes")

    def __init__(self, max_messages: int = 0, max_bytes: int = 0) -> None:
        self.max_messages = max_messages  # 0: no limit
        self.max_bytes = max_bytes
        self.outstanding = 0
        self.outstanding_bytes = 0

    def has_room(self) -> bool:
        return (not self.max_messages or self.outstanding < self.max_messages) and (
            not self.max_bytes or self.outstanding_bytes < self.max_bytes
        )


class Lease:
    __slots__ = ("ack_id", "deadline", "entry", "holder")

    def __init__(self, ack_id: str, entry: Entry, deadline: float, holder: Holder | None) -> None:
        self.ack_id = ack_id
        self.entry = entry
        self.deadline = deadline
        self.holder = holder


_queue_ids = itertools.count(1)


class Queue:
    """The delivery state of one subscription. Thread-safe."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.cond = threading.Condition(threading.Lock())
        self.deleted = False
        #: The server is stopping: streams end with UNAVAILABLE, which clients retry.
        self.stopped = False
        self._prefix = f"{next(_queue_ids)}-"
        self._ack_numbers = itertools.count(1)
        self._ready: deque[Entry] = deque()
        self._delayed: list[tuple[float, int, Entry]] = []
        self._leases: dict[str, Lease] = {}
        self._expiries: list[tuple[float, int, Lease]] = []
        self._seq = itertools.count()
        self._active_keys: set[str] = set()
        self._waiting_keys: dict[str, deque[Entry]] = {}

    # ------------------------------------------------------------------ publish
    def add(self, entries: Iterable[Entry]) -> None:
        with self.cond:
            ordering = self.config.ordering
            for entry in entries:
                key = entry.ordering_key
                if ordering and key:
                    if key in self._active_keys:
                        self._waiting_keys.setdefault(key, deque()).append(entry)
                        continue
                    self._active_keys.add(key)
                self._ready.append(entry)
            self.cond.notify_all()

    # ------------------------------------------------------------------ deliver
    def take_locked(self, holder: Holder | None, limit: int, max_bytes: int, ack_deadline: int
                    ) -> list[Lease]:
        """Lease up to ``limit`` ready messages (at least one, then up to
        ``max_bytes`` in all) to ``holder``. Call with ``cond`` held."""
        ready = self._ready
        if not ready:
            return []
        out: list[Lease] = []
        deadline = self.clock() + ack_deadline
        total = 0
        while ready and len(out) < limit and (holder is None or holder.has_room()):
            entry = ready[0]
            if out and total + entry.size > max_bytes:
                break
            ready.popleft()
            entry.attempts += 1
            lease = Lease(f"{self._prefix}{next(self._ack_numbers)}", entry, deadline, holder)
            self._leases[lease.ack_id] = lease
            heapq.heappush(self._expiries, (deadline, next(self._seq), lease))
            if holder is not None:
                holder.outstanding += 1
                holder.outstanding_bytes += entry.size
            total += entry.size
            out.append(lease)
        return out

    def has_ready_locked(self) -> bool:
        return bool(self._ready)

    # ------------------------------------------------------------------ settle
    def ack(self, ack_ids: Iterable[str]) -> list[str]:
        """Settle the leases; return the ack ids that name no live lease."""
        unknown: list[str] = []
        with self.cond:
            for ack_id in ack_ids:
                lease = self._leases.pop(ack_id, None)
                if lease is None:
                    unknown.append(ack_id)
                    continue
                self._unhold(lease)
                self._settle(lease.entry)
            self.cond.notify_all()
        return unknown

    def modify(self, ack_ids: Iterable[str], seconds: int) -> tuple[list[str], list[Entry]]:
        """Move the deadlines to ``seconds`` from now (0: nack). Return the unknown
        ack ids and the messages to dead-letter."""
        unknown: list[str] = []
        dead: list[Entry] = []
        with self.cond:
            now = self.clock()
            for ack_id in ack_ids:
                lease = self._leases.get(ack_id)
                if lease is None:
                    unknown.append(ack_id)
                elif seconds == 0:
                    del self._leases[ack_id]
                    self._unhold(lease)
                    self._release(lease.entry, now, dead)
                else:
                    deadline = now + seconds
                    if deadline < lease.deadline:
                        heapq.heappush(self._expiries, (deadline, next(self._seq), lease))
                    lease.deadline = deadline
            self.cond.notify_all()
        return unknown, dead

    def tick(self) -> list[Entry]:
        """Release lapsed leases and due backoffs; return messages to dead-letter."""
        dead: list[Entry] = []
        with self.cond:
            now = self.clock()
            expiries, woke = self._expiries, False
            while expiries and expiries[0][0] <= now:
                _, _, lease = heapq.heappop(expiries)
                if self._leases.get(lease.ack_id) is not lease:
                    continue
                if lease.deadline > now:
                    heapq.heappush(expiries, (lease.deadline, next(self._seq), lease))
                    continue
                del self._leases[lease.ack_id]
                self._unhold(lease)
                self._release(lease.entry, now, dead)
                woke = True
            delayed = self._delayed
            while delayed and delayed[0][0] <= now:
                self._ready.append(heapq.heappop(delayed)[2])
                woke = True
            if woke:
                self.cond.notify_all()
        return dead

    def restore(self, ack_ids: Iterable[str]) -> None:
        """Take back leases whose messages were never handed over (a pusher that
        stopped before sending): ready again, first, the attempt uncounted."""
        with self.cond:
            for ack_id in reversed(list(ack_ids)):
                lease = self._leases.pop(ack_id, None)
                if lease is None:
                    continue
                self._unhold(lease)
                lease.entry.attempts -= 1
                self._ready.appendleft(lease.entry)
            self.cond.notify_all()

    def counts(self) -> dict[str, int]:
        with self.cond:
            waiting = sum(len(q) for q in self._waiting_keys.values())
            return {
                "ready": len(self._ready) + waiting,
                "delayed": len(self._delayed),
                "leased": len(self._leases),
            }

    # ------------------------------------------------------------------ helpers
    def _unhold(self, lease: Lease) -> None:
        holder = lease.holder
        if holder is not None:
            holder.outstanding -= 1
            holder.outstanding_bytes -= lease.entry.size

    def _settle(self, entry: Entry) -> None:
        """``entry`` is done with: let the next message of its ordering key go."""
        key = entry.ordering_key
        if not (key and self.config.ordering):
            return
        waiting = self._waiting_keys.get(key)
        if waiting:
            self._ready.append(waiting.popleft())
            if not waiting:
                del self._waiting_keys[key]
        else:
            self._active_keys.discard(key)

    def _release(self, entry: Entry, now: float, dead: list[Entry]) -> None:
        config = self.config
        if config.dead_letter_topic and entry.attempts >= config.max_delivery_attempts:
            dead.append(entry)
            self._settle(entry)
            return
        if config.backoff is None:
            self._ready.appendleft(entry)
            return
        low, high = config.backoff
        delay = min(high, low * 2 ** min(entry.attempts - 1, 30))
        heapq.heappush(self._delayed, (now + delay, next(self._seq), entry))
