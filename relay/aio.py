"""Waiting in asyncio for what relay's threads complete, without parking a thread.

Pub/Sub confirms a publish on one of google-cloud-pubsub's threads, and room in
the publisher's budget is freed there too. A coroutine waiting for either gets
an asyncio future on its own loop, resolved with ``loop.call_soon_threadsafe``
by whichever thread completes the work: nothing polls, no executor thread is
borrowed, and the concurrent futures themselves are never cancelled (a
coroutine that stops waiting stops the wait, not the publish).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():  # cancelled (the coroutine gave up) or already timed out
        future.set_result(value)


class Wakeup:
    """A one-shot wake-up for the coroutine that made it; ``set()`` works from any thread.

    Make it inside the coroutine (it binds to the running loop), hand it to
    whoever will call ``set()``, then ``await wakeup.wait(timeout)``.
    """

    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[bool] = self._loop.create_future()

    def set(self) -> bool:
        """Wake the coroutine. False if its loop is closed (nobody can be waiting)."""
        try:
            self._loop.call_soon_threadsafe(_resolve, self._future, True)
        except RuntimeError:  # the loop is closed
            return False
        return True

    async def wait(self, timeout: float | None) -> bool:
        """True once ``set()`` was called, False after ``timeout`` seconds without it."""
        timer = None
        if timeout is not None:
            timer = self._loop.call_later(max(timeout, 0.0), _resolve, self._future, False)
        try:
            return await self._future
        finally:
            if timer is not None:
                timer.cancel()


async def wait_futures(futures: Iterable[Future[Any]], timeout: float | None) -> None:
    """Return once every future is done, or after ``timeout`` seconds.

    Like ``concurrent.futures.wait(futures, timeout)`` for a coroutine: the
    caller reads the futures afterwards. Cancelling the caller, or the timeout,
    leaves the futures running.
    """
    pending = [future for future in futures if not future.done()]
    if not pending:
        return
    wakeup = Wakeup()
    lock = threading.Lock()
    left = len(pending)

    def one_done(_: Future[Any]) -> None:
        nonlocal left
        with lock:
            left -= 1
            if left:
                return
        wakeup.set()

    for future in pending:
        future.add_done_callback(one_done)
    await wakeup.wait(timeout)
