"""``HandlerPool``: the one bounded pool of handler threads a Worker shares.

Why not ``concurrent.futures.ThreadPoolExecutor``: it builds a Future per task
(the worker never reads it), and its threads are joined at interpreter exit, so
a handler stuck past ``DRAIN_TIMEOUT`` would hold the process open after
``stop()`` gave up on it. These threads are daemons and tasks are bare
``(fn, arg)`` pairs on a ``SimpleQueue``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("relay.executor")

_STOP = object()


class HandlerPool:
    """``size`` daemon threads running ``fn(arg)`` tasks in submission order."""

    def __init__(self, size: int, name: str = "relay-handler") -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one thread, got {size}")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        if self._closed:
            raise RuntimeError("the handler pool is shut down")
        self._queue.put((fn, arg))

    def _run(self) -> None:
        get = self._queue.get
        while True:
            task = get()
            if task is _STOP:
                return
            fn, arg = task
            try:
                fn(arg)
            except BaseException:  # a task must never take a pool thread down
                logger.exception("a handler task raised")

    def shutdown(self, wait: float | None = None, *, drop_queued: bool = False) -> int:
        """Stop accepting work and let the threads exit.

        With ``drop_queued``, tasks still queued are not run (the Worker has
        already given their messages back). Waits up to ``wait`` seconds for
        the threads (``None``: don't wait); threads still busy after that are
        daemons and do not hold up interpreter exit. Returns how many queued
        tasks were dropped.
        """
        if self._closed:
            return 0
        self._closed = True
        dropped = 0
        while drop_queued:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1
        for _ in self._threads:
            self._queue.put(_STOP)
        if wait:
            for thread in self._threads:
                thread.join(wait)
        return dropped
