"""The transport seam is the bottom layer: what it and the transports import.

``relay/transports/base.py`` imports the standard library and ``relay.errors``
only, so a transport can be written by reading it alone; the transports import
nothing above the seam (no subscriptions, provisioning, worker, publisher...).
Imports are read with ``ast``, wherever they are: at the top, inside functions,
under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from relay import RetryPolicy, provisioning
from relay.transports import base

RELAY = Path(__file__).resolve().parents[2] / "relay"
BASE = RELAY / "transports" / "base.py"
TRANSPORTS = [
    *sorted((RELAY / "transports" / "pubsub").glob("*.py")),
    *sorted((RELAY / "transports" / "grpc").glob("*.py")),
    RELAY / "transports" / "memory.py",
    RELAY / "transports" / "memory_queue.py",
]

#: What a transport may import from relay: the seam and what sits below it.
BELOW_THE_SEAM = (
    "relay.errors", "relay.settings", "relay.redaction", "relay.transports", "relay._version",
)


def relay_imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Every relay module ``path`` (or ``source``, as if it were ``path``) imports,
    with its line, wherever the import is."""
    text = path.read_text() if source is None else source
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = path.relative_to(RELAY.parent).with_suffix("").parts[: -node.level]
                module = ".".join([*package, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == "relay":  # from relay import x: x may be a module
                found += [(node.lineno, f"relay.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return [(line, name) for line, name in found if name == "relay" or name.startswith("relay.")]


def _within(name: str, allowed: tuple[str, ...]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def test_the_seam_imports_only_relay_errors() -> None:
    wrong = [(line, name) for line, name in relay_imports(BASE) if name != "relay.errors"]
    assert not wrong, f"relay/transports/base.py imports above the seam: {wrong}"


@pytest.mark.parametrize("path", TRANSPORTS, ids=lambda p: str(p.relative_to(RELAY.parent)))
def test_transports_import_nothing_above_the_seam(path: Path) -> None:
    wrong = [
        (line, name) for line, name in relay_imports(path) if not _within(name, BELOW_THE_SEAM)
    ]
    assert not wrong, f"{path.relative_to(RELAY.parent)} imports above the seam: {wrong}"


def test_the_checker_sees_imports_wherever_they_are() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from relay.errors import TransportError\n"
        "from relay import provisioning\n"
        "from ..subscription import Subscription\n"
        "if TYPE_CHECKING:\n"
        "    from relay.policies import RetryPolicy\n"
        "def f():\n"
        "    import relay.worker\n"
    )
    names = [name for _, name in relay_imports(RELAY / "transports" / "sample.py", source)]
    assert names == [
        "relay.errors", "relay.provisioning", "relay.subscription", "relay.policies",
        "relay.worker",
    ]


def test_the_retry_policy_the_spec_carries_is_the_public_one() -> None:
    assert base.RetryPolicy is RetryPolicy
    assert base.SubscriptionSpec("s", "t", retry_policy=RetryPolicy(5, 100)).retry_policy == (
        RetryPolicy(5, 100)
    )


def test_update_subscription_is_asked_only_for_the_fields_the_seam_lists() -> None:
    assert provisioning.UPDATABLE is base.UPDATABLE
    assert not set(base.UPDATABLE) & set(provisioning.IMMUTABLE)
    assert set(base.UPDATABLE) <= {f.name for f in dataclasses.fields(base.SubscriptionSpec)}


def test_the_seam_docstring_lists_every_abstract_method() -> None:
    doc = base.__doc__ or ""
    for cls in (base.Transport, base.Stream, base.ReceivedMessage):
        for name in sorted(cls.__abstractmethods__):
            assert f"``{name}(" in doc, f"base.py's docstring does not describe {name}()"
    assert not hasattr(base.Transport, "ensure_subscription")
