"""Publisher back-pressure: a budget of messages and bytes sent but not yet confirmed.

Without it a burst to a slow or unreachable Pub/Sub would pile up in the
client's batches until memory ran out. ``Publisher`` takes room for each
message before handing it to the transport and gives it back when the
transport's future completes, on whatever thread completes it.

One plain lock guards the two counters: taking and giving back room is one
acquisition each, and nothing else happens under it while nobody waits. Threads
that find no room wait on a ``threading.Condition`` over that same lock;
coroutines (``apublish``) wait on a ``relay.aio.Wakeup`` of their own loop,
queued in order. ``release()`` notifies only when someone waits (a thread, or a
coroutine woken with ``loop.call_soon_threadsafe``, so the event loop never
blocks and no thread is parked on a coroutine's behalf).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from relay.aio import Wakeup


class PublisherFull(BufferError):
    """The publisher's back-pressure limit was reached (``PUBLISHER_MAX_MESSAGES``/``_BYTES``)."""


class Budget:
    """Room for at most ``max_messages`` messages and ``max_bytes`` payload bytes."""

    __slots__ = (
        "_cond", "_lock", "_sleepers", "_waiting", "bytes", "max_bytes", "max_messages",
        "messages",
    )

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._lock = threading.Lock()
        #: Over ``_lock``: threads waiting for room (``_waiting`` of them) wait on it.
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        #: Coroutines waiting for room, first come first woken.
        self._sleepers: deque[Wakeup] = deque()
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0

    def _full(self, size: int) -> bool:
        if self.messages >= self.max_messages:
            return True
        # One message bigger than the whole byte budget still goes, alone.
        return self.messages > 0 and self.bytes + size > self.max_bytes

    def _take(self, size: int) -> None:
        self.messages += 1
        self.bytes += size

    def acquire(self, size: int, wait: float) -> bool:
        """Take room for one message of ``size`` bytes, blocking up to ``wait`` seconds."""
        with self._lock:
            messages = self.messages
            # _full(size), inlined: this is the path every publish takes.
            if messages < self.max_messages and (
                not messages or self.bytes + size <= self.max_bytes
            ):
                self.messages = messages + 1
                self.bytes += size
                return True
            if wait <= 0:
                return False
            deadline = time.monotonic() + wait
            self._waiting += 1
            try:
                while self._full(size):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._waiting -= 1
            self._take(size)
            return True

    async def acquire_async(self, size: int, wait: float) -> bool:
        """``acquire`` for a coroutine: awaits room instead of blocking its loop.

        Cancelling the caller while it waits takes nothing, and hands a wake-up
        it may have received on to the next waiter, so no room goes unused.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            with self._lock:
                if not self._full(size):
                    self._take(size)
                    if self._sleepers and not self._full(0):
                        self._wake_next()  # one release can free room for several
                    return True
                left = deadline - loop.time()
                if left <= 0:
                    return False
                sleeper = Wakeup()
                self._sleepers.append(sleeper)
            try:
                woken = await sleeper.wait(left)
            except BaseException:
                self._leave(sleeper)
                raise
            if not woken:  # the deadline: one last look at the top of the loop
                self._leave(sleeper)

    def _leave(self, sleeper: Wakeup) -> None:
        with self._lock:
            try:
                self._sleepers.remove(sleeper)
            except ValueError:  # already woken, but leaving: pass the wake-up on
                self._wake_next()

    def _wake_next(self) -> None:
        # Called with the lock held. A sleeper whose loop has closed is skipped.
        while self._sleepers:
            if self._sleepers.popleft().set():
                return

    def release(self, size: int) -> None:
        with self._lock:
            self.messages -= 1
            self.bytes -= size
            if self._waiting:
                self._cond.notify()
            if self._sleepers:
                self._wake_next()
