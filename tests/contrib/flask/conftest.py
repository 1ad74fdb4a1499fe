"""Fixtures for the Flask extension's tests: relay's process-wide app and the
environment are put back after each test (``init_app`` installs an app)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import relay
from relay import Message, Subscription
from tests.support.outcomes import Outcomes as SharedOutcomes


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


class Outcomes(SharedOutcomes):
    """Records ``(subscription name, data, outcome)`` per processed message, and
    whether an app context was active in its pre hook."""

    def __init__(self) -> None:
        super().__init__()
        self.in_context: list[bool] = []

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        from flask import has_app_context

        self.in_context.append(has_app_context())
