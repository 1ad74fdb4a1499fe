"""Which Pub/Sub emulator a test run uses, and failing loudly when it is missing.

The emulator tests run on relay's own server by default, and on Google's with
``RELAY_EMULATOR=google`` (``scripts/test.sh`` runs them on both). A test that
starts an emulator through ``relay-cli``/``runrelay`` calls ``require_emulator``
first, so a missing Google emulator is a failure that says why, not a hang.
"""

from __future__ import annotations

import pytest

from relay.emulator import EmulatorError, default_kind, find_launcher


def require_emulator() -> str:
    """The kind of emulator this run uses; the test fails if it cannot be started."""
    try:
        kind = default_kind()
        if kind == "google":
            find_launcher()
    except EmulatorError as exc:
        pytest.fail(f"this test needs the Pub/Sub emulator: {exc}", pytrace=False)
    return kind
