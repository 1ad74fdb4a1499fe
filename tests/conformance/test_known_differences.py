"""The table of known differences is the one the scenarios use.

Runs once (no server): each row of ``KNOWN_DIFFERENCES`` is marked by a
``known_difference(...)`` branch in a scenario, no row is relay's server (its
differences are bugs), and a lookup of a row that is not in the table raises.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conformance.helpers import KNOWN_DIFFERENCES, Server, known_difference

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]  # selected with the suite

HERE = Path(__file__).parent
USE = re.compile(r'known_difference\(\s*clients\.server,\s*"(\w+)",\s*"([\w-]+)"\s*\)')


def test_every_known_difference_is_marked_in_a_scenario_and_only_those() -> None:
    used = {
        match.groups()
        for path in HERE.glob("test_*.py")
        for match in USE.finditer(path.read_text())
    }
    table = {(d.server, d.scenario) for d in KNOWN_DIFFERENCES}
    assert len(table) == len(KNOWN_DIFFERENCES), "a row is listed twice"
    assert used == table
    assert all(d.server == "google" for d in KNOWN_DIFFERENCES)


def test_a_difference_missing_from_the_table_is_an_error() -> None:
    with pytest.raises(LookupError):
        known_difference(Server("google", "127.0.0.1:1"), "google", "no-such-scenario")
    assert known_difference(Server("relay", "127.0.0.1:1"), "google", "filters") is False
    assert known_difference(Server("google", "127.0.0.1:1"), "google", "filters") is True
