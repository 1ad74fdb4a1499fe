"""The table of known differences is the one the scenarios use and the docs show.

Runs once (no server): each row of ``KNOWN_DIFFERENCES`` is marked by a
``known_difference(...)`` branch in a scenario, no row is relay's server (its
differences are bugs), a lookup of a row that is not in the table raises, and
docs/emulator.md holds exactly the table ``python -m tests.conformance.helpers``
prints.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.helpers import (
    KNOWN_DIFFERENCES,
    Server,
    known_difference,
    known_differences_markdown,
)

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]  # selected with the suite

HERE = Path(__file__).parent
DOC = HERE.parents[1] / "docs" / "emulator.md"
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


def test_the_docs_table_is_exactly_what_the_helpers_module_prints() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "tests.conformance.helpers"], cwd=HERE.parents[1],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert printed == known_differences_markdown() + "\n"
    lines = DOC.read_text().splitlines()
    start = lines.index(printed.splitlines()[0])  # the header row
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    in_docs = "\n".join(lines[start:end]) + "\n"
    assert in_docs == printed, (
        "docs/emulator.md's difference table is out of date: replace it with the output "
        "of `python -m tests.conformance.helpers`"
    )
    assert lines.count(lines[start]) == 1, "docs/emulator.md has two difference tables"
