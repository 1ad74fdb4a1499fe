"""A test with no ``RELAY_*`` variable from the shell and relay's process-wide app put
back afterwards: ``isolated_relay``, used as an autouse fixture by the tests that
build apps from settings (the Flask extension's, the push app's)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import relay


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
