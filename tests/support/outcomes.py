"""A middleware that records what a worker processed, for tests that wait on it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from relay import BaseMiddleware, Message, Outcome, Subscription


class Outcomes(BaseMiddleware):
    """Records (subscription, data, outcome) for every processed message."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, Outcome]] = []
        self.changed = threading.Condition()

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        with self.changed:
            self.seen.append((subscription.name, message.data, outcome))
            self.changed.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[str, Any, Outcome]]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.seen) >= count, timeout):
                pytest.fail(f"{count} messages expected, {len(self.seen)} processed: {self.seen}")
            return list(self.seen)
