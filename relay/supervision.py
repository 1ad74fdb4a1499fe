"""``StreamState``: what a Worker's supervisor knows of one subscription's stream.

The supervisor thread (``Worker._supervise``) polls every stream a few times a
second. A stream that ends is restarted with backoff (``Worker``); one that
stays open but cannot reach the broker (``Stream.connected``) or keeps failing
(``Stream.failure``: say, google's client reopening a streaming pull that
errors every time) is watched here: reported in ``Worker.status()`` and logged
without flooding: a warning when it starts (after ``DISCONNECTED_WARNING``
seconds for a lost connection), again every ``FAILING_WARNING_EVERY`` seconds
while it keeps failing, and one line when it works again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from relay.subscription import Subscription
from relay.transports.base import Stream

logger = logging.getLogger("relay.worker")

#: Seconds a stream may be disconnected before the worker logs a warning.
DISCONNECTED_WARNING = 5.0
#: Seconds between two warnings about a stream that keeps failing.
FAILING_WARNING_EVERY = 60.0


@dataclass
class StreamState:
    """Supervision state of one subscription's stream (for ``Worker.status()``)."""

    subscription: Subscription
    stream: Stream | None = None
    state: str = "idle"  # idle | open | restarting | stopped (see reported_state)
    failures: int = 0
    last_error: str | None = None
    opened_at: float = 0.0
    retry_at: float = 0.0
    #: False while an open stream cannot reach the broker (``Stream.connected``).
    connected: bool = True
    #: Why an open stream keeps failing (``Stream.failure``); None while it works.
    failure: str | None = None
    #: When the stream last went from healthy to failing or disconnected.
    unhealthy_since: float | None = None
    #: Whether a warning was logged since it was last healthy.
    warned: bool = False
    #: When the last "keeps failing" warning was logged (kept across recoveries,
    #: so a stream that flaps is not logged more often than that).
    failing_warned_at: float | None = None

    def reported_state(self) -> str:
        """``state``, with ``connecting`` and ``failing`` for an open stream in trouble."""
        if self.state == "open" and not self.connected:
            return "connecting"
        if self.state == "open" and self.failure is not None:
            return "failing"
        return self.state

    def watch(self, stream: Stream, now: float) -> None:
        """Read an open stream's health, and log a change as the module docstring says."""
        self.connected = stream.connected()
        self.failure = stream.failure()
        name = self.subscription.name
        if self.connected and self.failure is None:
            if self.unhealthy_since is not None:
                if self.warned:
                    logger.info("stream for %s is working again", name)
                self.unhealthy_since = None
                self.warned = False
            return
        if self.unhealthy_since is None:
            self.unhealthy_since = now
        if not self.connected:
            if not self.warned and now - self.unhealthy_since > DISCONNECTED_WARNING:
                self.warned = True
                logger.warning(
                    "stream for %s cannot reach Pub/Sub; the client keeps reconnecting", name
                )
            return
        self.last_error = self.failure
        last = self.failing_warned_at
        if last is None or now - last >= FAILING_WARNING_EVERY:
            self.warned = True
            self.failing_warned_at = now
            logger.warning("stream for %s keeps failing: %s", name, self.failure)

    def failed(
        self, error: BaseException | None, now: float, backoff_min: float, backoff_max: float
    ) -> float:
        """Count a failure, record it, and schedule the next try with jittered backoff."""
        self.failures += 1
        if self.unhealthy_since is None:
            self.unhealthy_since = now
        self.last_error = f"{type(error).__name__}: {error}" if error else "stream ended"
        delay = min(backoff_max, backoff_min * 2.0 ** (self.failures - 1))
        delay *= random.uniform(0.8, 1.2)
        self.retry_at = now + delay
        return delay

    def snapshot(self, now: float) -> dict[str, Any]:
        """This subscription's entry in ``Worker.status()``."""
        return {
            "name": self.subscription.name,
            "topic": self.subscription.full_topic,
            "state": self.reported_state(),
            "failures": self.failures,
            "last_error": self.last_error,
            "unhealthy_for": None if self.unhealthy_since is None else now - self.unhealthy_since,
        }
