"""The futures ``publish()`` returns on the grpc transport: ``PublishFuture``,
a ``concurrent.futures.Future`` that shares its batch's ``BatchCondition`` and,
once resolved, is one object for the garbage collector instead of twelve.

Callers keep publish futures by the thousand (the publish benchmark keeps
50,000), and every full collection walks every object they hold: with plain
Futures that was half the CPU of publishing. Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import FINISHED
from typing import Any

#: What ``Future.__init__`` sets on this Python, and what ``PublishFuture`` sets
#: in its place: where they differ, it builds and trims itself the plain way.
_FUTURE_FIELDS = frozenset(vars(Future()))
_PLAIN_FIELDS = frozenset(
    {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
)
_PENDING = vars(Future())["_state"]
#: A resolved ``PublishFuture``'s callbacks (they ran) and waiters (see there).
_RAN: tuple[()] = ()
_IDLE_WAITERS: list[Any] = []


class BatchCondition(threading.Condition):
    """The Condition a batch's futures share; ``notify_all`` is free when nobody
    sleeps on it (the usual case: callers wait with ``concurrent.futures.wait``,
    callbacks or not at all, and a plain Condition's costs a microsecond)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = 0  # changed and read with the lock held

    def wait(self, timeout: float | None = None) -> bool:
        self.sleeping += 1
        try:
            return super().wait(timeout)
        finally:
            self.sleeping -= 1

    def notify_all(self) -> None:
        if self.sleeping:
            super().notify_all()


class PublishFuture(Future[str]):
    """A ``concurrent.futures.Future`` that shares its batch's ``Condition``.

    A plain Future builds a Condition of its own: ten objects the garbage
    collector tracks (the Condition, its RLock, deque and five bound methods).
    Callers keep publish futures by the thousand, and every full collection
    walks them all: that was half the CPU of publishing 50,000 messages. The
    futures of one batch share one Condition instead. A ``notify_all`` then also
    wakes the waiters of the batch's other futures, so ``result()`` and
    ``exception()`` wait in a loop until this one is done or their time is up
    (a plain Future waits once, and would fail a spurious wake-up with
    ``TimeoutError``); ``concurrent.futures.wait`` and callbacks do not use it.

    Resolved, it also lets go of its two lists: the callbacks have run (a later
    ``add_done_callback`` runs at once and stores nothing) and, unless a
    ``concurrent.futures.wait`` is still between adding its waiter and taking
    it out, the waiters list is swapped for one shared list that such calls
    only add to and remove from. A kept future is then one tracked object, not
    three: what a full collection walks shrinks as much again.
    """

    def __init__(self, condition: threading.Condition) -> None:
        if _FUTURE_FIELDS != _PLAIN_FIELDS:  # a Python whose Future is built otherwise
            super().__init__()
            self._condition = condition
            return
        # Future.__init__, with the batch's Condition for a new one of its own
        # (building that is most of a Future's cost).
        self._condition = condition
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[str]], object]] = []

    def cancel(self) -> bool:
        """A publish handed to the transport cannot be called back: ``False``, as
        google-cloud-pubsub's futures answer (the message is sent either way)."""
        return False

    def set_result(self, result: str) -> None:
        super().set_result(result)
        self._let_go()

    def set_exception(self, exception: BaseException | None) -> None:
        super().set_exception(exception)
        self._let_go()

    def _let_go(self) -> None:
        """Once resolved and its callbacks run: drop what it no longer uses."""
        if _FUTURE_FIELDS != _PLAIN_FIELDS:
            return
        with self._condition:
            self._done_callbacks = _RAN  # type: ignore[assignment]
            if not self._waiters:
                self._waiters = _IDLE_WAITERS

    def result(self, timeout: float | None = None) -> str:
        if self._state is FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]  # resolved: it never changes again
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return super().result(timeout)
            except TimeoutError:
                timeout = self._woken_early(end)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state is FINISHED:
            return self._exception  # resolved: it never changes again
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return super().exception(timeout)
            except TimeoutError:
                timeout = self._woken_early(end)

    def _woken_early(self, end: float | None) -> float | None:
        """After a ``TimeoutError`` from a wait that was to end at ``end``: how much
        longer to wait, as it was woken for another future of the batch; or
        re-raise it, as this future failed with it or the time is up."""
        if self.done():
            raise  # the TimeoutError being handled by the caller (result, exception)
        if end is None:
            return None
        left = end - time.monotonic()
        if left <= 0:
            raise
        return left


def resolve(condition: threading.Condition, futures: list[PublishFuture],
            results: Iterable[str]) -> int:
    """Resolve a batch's futures (which share ``condition``) with ``results``, in
    order; the number resolved (one already resolved is skipped).

    ``set_result`` on each would take the shared lock three times per future
    (to resolve, to let go, and a plain Future's notify); the batch takes it
    twice in all. Done callbacks run outside it, as ``set_result`` runs them.
    """
    if _FUTURE_FIELDS != _PLAIN_FIELDS:
        resolved = 0
        for future, result in zip(futures, results, strict=False):
            try:
                future.set_result(result)
            except InvalidStateError:  # already resolved
                continue
            resolved += 1
        return resolved
    done: list[PublishFuture] = []
    with condition:
        for future, result in zip(futures, results, strict=False):
            if future._state is not _PENDING:
                continue
            future._result = result
            future._state = FINISHED
            for waiter in future._waiters:
                waiter.add_result(future)
            done.append(future)
        condition.notify_all()
    for future in done:
        future._invoke_callbacks()  # type: ignore[attr-defined]
    with condition:
        for future in done:
            future._done_callbacks = _RAN  # type: ignore[assignment]
            if not future._waiters:
                future._waiters = _IDLE_WAITERS
    return len(done)
