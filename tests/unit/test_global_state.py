"""docs/architecture.md's "Where global state lives" table names every lock,
counter and ``global`` in relay/, so the page cannot drift from the code."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Where global state lives"
#: Calls whose result, kept at module (or class) level, is state shared by the process.
STATEFUL = {
    "threading.Lock", "threading.RLock", "threading.Condition", "threading.Event",
    "threading.Semaphore", "threading.BoundedSemaphore", "itertools.count",
}


def _table_rows() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{DOC}: no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _assigned(body: list[ast.stmt]) -> Iterator[tuple[str, str]]:
    """``(name, call)`` for each ``name = threading.Lock()`` (and the like) in ``body``."""
    for node in body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, ast.Call) and ast.unparse(value.func) in STATEFUL:
            for target in targets:
                if isinstance(target, ast.Name):
                    yield target.id, ast.unparse(value.func)


def global_state(path: Path) -> Iterator[tuple[str, str]]:
    """``(name, what)`` for each piece of process-wide state ``path`` defines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    yield from ((name, f"{call}() at module level") for name, call in _assigned(tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for name, call in _assigned(node.body):
                yield name, f"{call}() shared by every {node.name}"
        elif isinstance(node, ast.Global):
            for name in node.names:
                yield name, "set through a `global` statement"


def test_the_architecture_doc_names_every_piece_of_global_state() -> None:
    rows = _table_rows()
    missing = []
    for path in sorted((ROOT / "relay").rglob("*.py")):
        module = _module(path)
        for name, what in dict.fromkeys(global_state(path)):
            word = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
            if not any(module in row and word.search(row) for row in rows):
                missing.append(
                    f"{path.relative_to(ROOT)}: {name} ({what}) is not in the table under "
                    f"{SECTION!r} in docs/architecture.md: add a row naming "
                    f"`{module}.{name}`, what it holds and how it is reached"
                )
    assert not missing, "\n".join(missing)


def test_the_scan_finds_what_the_table_names() -> None:
    """The scan itself works: it sees the state the table has always named."""
    found = set(global_state(ROOT / "relay" / "app.py"))
    assert ("_app_lock", "threading.Lock() at module level") in found
    assert ("_app", "set through a `global` statement") in found
