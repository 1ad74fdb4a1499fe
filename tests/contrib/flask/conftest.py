"""Fixtures for the Flask extension's tests: relay's process-wide app and the
environment are put back after each test (``init_app`` installs an app)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import relay
from relay import BaseMiddleware, Message, Outcome, Subscription


@pytest.fixture(autouse=True)
def isolated_relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``RELAY_*`` variable from the shell; relay's process-wide app restored after."""
    for var in list(os.environ):
        if var.startswith("RELAY_"):
            monkeypatch.delenv(var)
    previous = relay.set_app(None)
    try:
        yield
    finally:
        relay.reset()
        relay.set_app(previous)


class Outcomes(BaseMiddleware):
    """Records ``(subscription name, data, outcome)`` per processed message, and
    whether an app context was active in its pre hook."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, Outcome]] = []
        self.in_context: list[bool] = []
        self.changed = threading.Condition()

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        from flask import has_app_context

        self.in_context.append(has_app_context())

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
