"""How ``relay-cli run`` hears SIGINT and SIGTERM: the first asks for a graceful
stop (``StopSignals.requested``), a second forces one (``ForcedExit``)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("relay.cli")  # heard by the CLI, logged as the CLI

#: Seconds a forced stop has to leave by itself before the process exits anyway.
FORCE_GRACE = 10.0


class ForcedExit(BaseException):
    """Raised in the main thread by a second stop signal.

    A ``BaseException``, as ``KeyboardInterrupt`` is: the signal lands wherever
    the main thread is, and an ``except Exception`` there (``logging`` swallows
    what a handler's ``emit`` raises) must not absorb it.
    """


class StopFlag:
    """A stop request, set by a signal handler: ``is_set``, ``set``, ``wait`` as an Event's.

    Not a ``threading.Event``: ``Event.wait()`` holds the Event's lock between its
    steps, and a handler that runs then, in the same (main) thread, would block
    in ``Event.set()`` on that lock forever. This one is a plain attribute, so
    setting it takes no lock, and ``wait`` polls it every 50 ms.
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                break
            time.sleep(left)
        return self._set


class StopSignals:
    """SIGINT/SIGTERM set ``requested``; a second one raises ``ForcedExit``.

    With ``escalate=False`` (a worker process of ``run --processes N``) a second
    one is ignored: it is usually the same stop arriving twice (a terminal's
    Ctrl-C reaches the whole process group, and the supervisor forwards it), and
    the supervisor forces a stop with SIGKILL.
    """

    def __init__(
        self, *, escalate: bool = True, force_grace: float = FORCE_GRACE,
        force_exit: Callable[[int], Any] = os._exit,
    ) -> None:
        self.requested = StopFlag()
        self.escalate = escalate
        self._previous: dict[int, Any] = {}
        self._force_grace = force_grace
        self._force_exit = force_exit
        self._watchdog: threading.Timer | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            if not self.escalate:
                logger.debug("%s received again: already stopping", name)
                return
            self._arm_watchdog()
            raise ForcedExit(f"{name} received again: abandoning the drain")
        # Set before logging: a second signal can run this handler again while the
        # first is still writing its line, and must find the stop already requested.
        self.requested.set()
        logger.info("%s received: stopping gracefully%s", name,
                    " (send it again to force)" if self.escalate else "")

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum == signal.SIGINT and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # started in the background by a shell: Ctrl-C is not for us
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _arm_watchdog(self) -> None:
        """Exit with status 1 after ``force_grace`` seconds, should the main thread
        be somewhere ``ForcedExit`` cannot leave (a C call that does not return,
        code that catches ``BaseException``): a forced stop always ends the process."""
        if self._watchdog is not None:
            return

        def force() -> None:
            sys.stderr.write("relay-cli: forced stop did not finish: exiting now\n")
            sys.stderr.flush()
            self._force_exit(1)

        self._watchdog = threading.Timer(self._force_grace, force)
        self._watchdog.daemon = True
        self._watchdog.start()

    def wait(self, parent: int | None = None) -> None:
        """Until a stop is requested, or (``parent``: the supervisor's pid) that process
        is gone: a worker whose supervisor was killed stops by itself."""
        while not self.requested.wait(0.5):
            if parent is not None and os.getppid() != parent:
                logger.warning("the supervisor (pid %d) is gone: stopping gracefully", parent)
                self.requested.set()
