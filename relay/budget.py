"""Publisher back-pressure: a budget of messages and bytes sent but not yet confirmed.

Without it a burst to a slow or unreachable Pub/Sub would pile up in the
client's batches until memory ran out. ``Publisher`` takes room for each
message before handing it to the transport and gives it back when the
transport's future completes, on whatever thread completes it.

Threads wait for room on a ``threading.Condition``. Coroutines (``apublish``)
wait on a ``relay.aio.Wakeup`` of their own loop, queued in order; ``release()``
wakes the first one with ``loop.call_soon_threadsafe``, so the event loop never
blocks and no thread is parked on a coroutine's behalf.
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

    __slots__ = ("_cond", "_sleepers", "bytes", "max_bytes", "max_messages", "messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._cond = threading.Condition()
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
        with self._cond:
            if self._full(size):
                deadline = time.monotonic() + wait
                while self._full(size):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
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
            with self._cond:
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
        with self._cond:
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
        with self._cond:
            self.messages -= 1
            self.bytes -= size
            self._cond.notify()
            if self._sleepers:
                self._wake_next()
