"""Delayed tasks (``countdown``/``eta``): holding a message until it is due.

Pub/Sub has no delayed delivery. A task message whose ``relay_eta`` is in the
future is held by the worker that received it: not run, not settled, so the
client library keeps extending its lease and Pub/Sub neither redelivers it nor
counts another delivery attempt (a delayed task is never dead-lettered for
waiting). At its ETA it goes to the handlers like any message.

The lease can be extended for ``FLOW_MAX_LEASE_DURATION`` seconds at most, so
``max_delay(settings)`` (that, minus ``HOLD_MARGIN``) is the longest delay
``apply_async`` accepts. A message held that long whose ETA is still ahead (a
sender with a longer limit than this worker) is published again, unchanged,
and acked once Pub/Sub has the copy: the copy starts a fresh lease. When the
worker stops, what it holds is handed back the same way, so a deploy costs a
delayed task no delivery attempt either.

The cost: a held message counts against its subscription's flow control
(``FLOW_MAX_MESSAGES``, ``FLOW_MAX_BYTES``) until it is due. Each task has a
subscription of its own, so a backlog of delayed messages can only hold up
that task's own due messages; raise the flow limits for a task that is
delayed in bulk. A held message occupies no handler thread: one timer thread
per subscription with held messages waits for them all.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.task_wire import ATTR_ETA, parse_eta
from relay.transports.base import ReceivedMessage, Transport

if TYPE_CHECKING:
    from relay.settings import Settings
    from relay.subscription import Subscription

logger = logging.getLogger("relay.delays")

#: Seconds of lease kept in reserve below ``FLOW_MAX_LEASE_DURATION``.
HOLD_MARGIN = 60.0
#: A message due within this many seconds runs at once.
EARLY = 0.01

Dispatch = Callable[[ReceivedMessage], object]
Done = Callable[[ReceivedMessage], None]


def max_delay(settings: Settings) -> float:
    """The longest ``countdown`` (seconds) a task accepts with these settings:
    ``FLOW_MAX_LEASE_DURATION`` minus ``HOLD_MARGIN`` (or half of it, if shorter)."""
    lease = settings.flow_max_lease_duration
    return max(lease / 2, lease - HOLD_MARGIN)


@dataclass(order=True)
class _Held:
    wake: float  # monotonic: the ETA, or the end of what the lease allows
    seq: int
    received: ReceivedMessage = field(compare=False)
    due: float = field(compare=False)  # epoch seconds
    dispatch: Dispatch = field(compare=False)
    done: Done = field(compare=False)


class Holder:
    """Holds one subscription's not-yet-due messages, on one timer thread.

    ``hold(received, dispatch, done)`` returns False for a message that is due
    (run it now); otherwise it keeps it and later calls ``dispatch(received)``
    when it is due, or hands it back (published again, then acked) and calls
    ``done(received)``. ``stopping`` set: everything held is handed back.
    """

    def __init__(
        self,
        subscription: str,
        topic: str,
        max_hold: float,
        transport: Callable[[], Transport],
        stopping: threading.Event,
    ) -> None:
        self.subscription = subscription
        self.topic = topic
        self.max_hold = max_hold
        self._transport = transport
        self._stopping = stopping
        self._cond = threading.Condition()
        self._heap: list[_Held] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def hold(self, received: ReceivedMessage, dispatch: Dispatch, done: Done) -> bool:
        due = parse_eta(received.attributes.get(ATTR_ETA))
        if due is None:
            return False  # no ETA (or one the task's handler will reject)
        wait = due - time.time()
        if wait <= EARLY:
            return False
        now = time.monotonic()
        entry = _Held(now + min(wait, self.max_hold), next(self._seq), received, due,
                      dispatch, done)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"relay-hold-{self.subscription}", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        logger.debug("holding message %s on %s for %.1f s", received.message_id,
                     self.subscription, wait)
        return True

    def _run(self) -> None:
        while True:
            handing_back = False
            with self._cond:
                while True:
                    if self._stopping.is_set():
                        ready, self._heap, handing_back = self._heap, [], True
                        break
                    if not self._heap:
                        self._thread = None
                        return
                    now = time.monotonic()
                    if self._heap[0].wake <= now:
                        ready = []
                        while self._heap and self._heap[0].wake <= now:
                            ready.append(heapq.heappop(self._heap))
                        break
                    # Short waits: ``stopping`` is an Event, not this condition.
                    self._cond.wait(min(self._heap[0].wake - now, 0.1))
            for entry in ready:
                if handing_back or entry.due - time.time() > EARLY:
                    self._hand_back(entry, "the worker is stopping" if handing_back
                                    else "held as long as its lease allows")
                else:
                    self._release(entry)
            if handing_back:
                with self._cond:
                    self._thread = None
                return

    def _release(self, entry: _Held) -> None:
        try:
            entry.dispatch(entry.received)
        except Exception:  # the worker shut its executor down meanwhile
            logger.debug("dispatching a due message failed; nacked", exc_info=True)
            entry.received.nack()
            entry.done(entry.received)

    def _hand_back(self, entry: _Held, why: str) -> None:
        """Publish the message again, unchanged, then ack it (nack if that fails)."""
        received = entry.received

        def sent(future: Future[str]) -> None:
            error = future.exception()
            try:
                if error is None:
                    received.ack()
                    logger.info(
                        "delayed message %s on %s (due in %.0f s) %s: published again as %s",
                        received.message_id, self.subscription, entry.due - time.time(),
                        why, future.result(),
                    )
                else:
                    received.nack()
                    logger.error(
                        "delayed message %s on %s could not be published again (%s: %s); "
                        "nacked, so Pub/Sub delivers it again", received.message_id,
                        self.subscription, type(error).__name__, error,
                    )
            finally:
                entry.done(received)

        try:
            future = self._transport().publish(
                self.topic, received.data, received.attributes,
                ordering_key=received.ordering_key,
            )
        except Exception as exc:
            failed: Future[str] = Future()
            failed.set_exception(exc)
            future = failed
        future.add_done_callback(sent)


def holder_for(
    sub: Subscription,
    settings: Settings,
    transport: Callable[[], Transport],
    stopping: threading.Event,
) -> Holder | None:
    """A ``Holder`` for a task's subscription; None for other subscriptions."""
    from relay.tasks import Task

    if not isinstance(sub, Task):
        return None
    return Holder(sub.name, sub.full_topic, max_delay(settings), transport, stopping)
