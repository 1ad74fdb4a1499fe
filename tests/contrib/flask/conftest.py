"""Fixtures for the Flask extension's tests: relay's process-wide app and the
environment are put back after each test (``init_app`` installs an app)."""

from __future__ import annotations

from relay import Message, Subscription
from tests.support.isolation import isolated_relay  # noqa: F401 (autouse)
from tests.support.outcomes import Outcomes as SharedOutcomes


class Outcomes(SharedOutcomes):
    """Records ``(subscription name, data, outcome)`` per processed message, and
    whether an app context was active in its pre hook."""

    def __init__(self) -> None:
        super().__init__()
        self.in_context: list[bool] = []

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        from flask import has_app_context

        self.in_context.append(has_app_context())
