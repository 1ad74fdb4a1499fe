"""How a streaming pull's health is reported (``Stream.failure()``)."""

from __future__ import annotations

import time


class Health:
    """Whether a pull keeps failing: errors in a row (UNAVAILABLE: more of them),
    healed by a message or by a call that stays up for ``heal_after`` seconds."""

    def __init__(self, heal_after: float) -> None:
        self.heal_after = heal_after
        self.error: str | None = None
        self.code = ""
        self.errors = 0
        self.error_at = 0.0
        self.since = 0.0
        self.opened_at = 0.0

    def ended(self, code: str, details: str) -> None:
        now = time.monotonic()
        if self.error is None:
            self.since = now
        self.errors += 1
        self.code = code
        self.error_at = now
        self.error = f"{code}: {details}" if details else code

    def healed(self) -> None:
        self.error = None
        self.errors = 0
        self.code = ""

    def failure(self) -> str | None:
        if self.error is None:
            return None
        now = time.monotonic()
        transient = self.code == "UNAVAILABLE"
        quiet = 5.0 if transient else self.heal_after
        if self.opened_at > self.error_at and now - self.error_at >= quiet:
            self.healed()
            return None
        if self.errors < (3 if transient else 2):
            return None
        return (
            f"{self.error} (the streaming pull ended with an error {self.errors} time(s) in "
            f"{now - self.since:.0f} s; relay's gRPC transport reopens it)"
        )
