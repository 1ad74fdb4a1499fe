"""The gRPC calls of one streaming pull, as relay sees them.

google's stream manager calls its subscriber client's ``streaming_pull`` (a
public method) for every (re)open of a stream. relay gives each stream a client
of its own, on the transport's shared gRPC channel, whose ``streaming_pull``
hands the call to that stream's ``PullCalls`` (``transport._SubscriberClient``).
Since the client belongs to one stream, every call, and how it ended, is that
stream's: nothing is inferred from request contents. That gives relay two things:

* ``end()``: a half-close of the current call's requests. A server ends a
  streaming pull whose client half-closed it (the emulator at once, measured);
  a cancelled one it may keep serving (the emulator does, until the call's
  deadline: it keeps handing it messages, which then wait out their lease).
  ``PubSubStream.close()`` ends the call this way before google cancels it.
* ``failure()``: google's client reopens a stream that ends with an error it
  deems retryable (``RESOURCE_EXHAUSTED``, ``INTERNAL``, ``UNKNOWN``, ...)
  forever, silently. Each end is recorded here, so a stream that keeps failing
  shows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

logger = logging.getLogger("relay.transports.pubsub")

#: How a call may end without anything being wrong: closed (by either side) or at
#: its deadline (``STREAM_LIFETIME``). Not an error, and no proof of health either.
ROUTINE_ENDS = frozenset({"OK", "CANCELLED", "DEADLINE_EXCEEDED"})
#: Error ends in a row (no message between) before a stream counts as failing:
#: one error is not "keeps failing" (Pub/Sub resets a long-lived stream now and then).
REPEATS = 2
#: Pub/Sub ends streams with UNAVAILABLE to move them between servers, and a
#: network outage ends them with it too (the outage itself shows in the channel's
#: state: ``Stream.connected``). So UNAVAILABLE counts only after
#: ``TRANSIENT_REPEATS`` ends in a row, and is over once a call has been up for
#: ``TRANSIENT_HEAL_AFTER`` seconds since the last.
TRANSIENT_ENDS = frozenset({"UNAVAILABLE"})
TRANSIENT_REPEATS = 3
TRANSIENT_HEAL_AFTER = 5.0

_END = object()


class _Requests:
    """The requests of one call: google's, forwarded by a thread, until ``end()``.

    google's request generator blocks until google has something to send
    (hours, on a quiet stream), so it cannot be stopped from outside; gRPC
    reads this iterator instead, which ends (and so half-closes the call) the
    moment ``end()`` is called. The forwarding thread ends with google's
    generator, at the latest a second after the call does.
    """

    def __init__(self, requests: Iterable[Any] | None, *, ended: bool = False) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        if ended or requests is None:
            self._queue.put(_END)
            return
        threading.Thread(
            target=self._forward, args=(iter(requests),), name="relay-pull-requests", daemon=True
        ).start()

    def _forward(self, requests: Iterator[Any]) -> None:
        try:
            for request in requests:
                self._queue.put(request)
        except Exception:
            logger.debug("google's request generator raised", exc_info=True)
        finally:
            self._queue.put(_END)

    def end(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)  # a later next() ends too
            raise StopIteration
        return item


def _status(call: Any) -> tuple[str, str]:
    """The name of the status code a finished call ended with, and its details."""
    try:
        code, details = call.code(), call.details()
    except Exception as exc:  # a call that cannot say: count it as an error
        return "UNKNOWN", f"{type(exc).__name__}: {exc}"
    return str(getattr(code, "name", code)), str(details or "")


class PullCalls:
    """The calls of one stream: the current one (to end it) and how they ended.

    A stream is failing once ``REPEATS`` calls in a row ended with an error
    (``TRANSIENT_REPEATS`` for UNAVAILABLE), and until a message arrives or a
    call opened since the last error has been up for ``heal_after`` seconds, or
    twice the longest gap between the errors if that is longer. Choose
    ``heal_after`` longer than the stream's ack deadline: a message that breaks
    every call that carries it (say, one larger than the channel accepts) comes
    back once its lease lapses; the gap rule keeps a failure that recurs less
    often than that (the emulator spreads it) from passing for healed between.
    """

    def __init__(self, heal_after: float) -> None:
        self.heal_after = heal_after
        self._lock = threading.Lock()
        self._current: tuple[_Requests, threading.Event] | None = None
        self._ending = False
        self._opened_at = 0.0
        #: The last failed end ("RESOURCE_EXHAUSTED: ..."), None while healthy.
        self.error: str | None = None
        self._code = ""
        self._errors = 0
        self._error_at = 0.0
        self._gap = 0.0
        self._failing_since = 0.0

    def open(self, start: Callable[[Iterator[Any]], Any], requests: Iterable[Any] | None) -> Any:
        """Start one call with ``start(requests)`` (google's ``streaming_pull``)."""
        with self._lock:
            ending = self._ending
        gated = _Requests(requests, ended=ending)
        try:
            call = start(gated)
        except BaseException as exc:
            gated.end()
            code = getattr(getattr(exc, "grpc_status_code", None), "name", type(exc).__name__)
            self._ended(str(code), str(exc))
            raise
        ended = threading.Event()
        with self._lock:
            self._current = (gated, ended)
            self._opened_at = time.monotonic()

        def on_end() -> None:  # on a gRPC thread, once the call is over
            ended.set()
            self._ended(*_status(call))

        if not call.add_callback(on_end):  # already over
            on_end()
        return call

    def _ended(self, code: str, details: str) -> None:
        with self._lock:
            if self._ending:
                return  # relay's own close
            if code in ROUTINE_ENDS:
                return
            now = time.monotonic()
            if self.error is None:
                self._failing_since = now
            else:
                self._gap = max(self._gap, now - self._error_at)
            self._errors += 1
            self._code = code
            self._error_at = now
            self.error = f"{code}: {details}" if details else code
        logger.debug("a streaming pull ended with %s: %s", code, details)

    def _heal(self) -> None:
        self.error = None
        self._errors = 0
        self._gap = 0.0
        self._code = ""

    def delivered(self) -> None:
        """A message arrived: the current call works."""
        if self.error is not None:
            with self._lock:
                self._heal()

    def failure(self) -> str | None:
        """Why the stream keeps failing, or None (see the module docstring)."""
        with self._lock:
            if self.error is None:
                return None
            now = time.monotonic()
            transient = self._code in TRANSIENT_ENDS
            quiet = TRANSIENT_HEAL_AFTER if transient else max(self.heal_after, 2 * self._gap)
            if self._opened_at > self._error_at and now - self._error_at >= quiet:
                self._heal()
                return None
            if self._errors < (TRANSIENT_REPEATS if transient else REPEATS):
                return None
            return (
                f"{self.error} (the streaming pull ended with an error {self._errors} time(s) "
                f"in {now - self._failing_since:.0f} s; google's client reopens it)"
            )

    def end(self, wait: float) -> bool:
        """Half-close the current call and wait up to ``wait`` s for the server to end it.

        Every later call is opened already half-closed. True if no call is open
        any more.
        """
        with self._lock:
            self._ending = True
            current = self._current
        if current is None:
            return True
        gated, ended = current
        if not ended.is_set():
            gated.end()
        return ended.wait(wait)
