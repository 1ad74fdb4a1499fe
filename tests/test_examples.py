"""Every example runs here: the quickstart end to end on the emulator, and the
examples' subscriptions through a real Worker on the memory transport."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay import BaseMiddleware, Message, Outcome, Publisher, Settings, Subscription, Worker
from relay.discovery import discover
from relay.emulator import EmulatorError, find_launcher
from relay.middleware import MiddlewareChain
from relay.transports.memory import MemoryTransport

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


# --------------------------------------------------------------- end to end
@pytest.mark.emulator
@pytest.mark.timeout(360)
def test_quickstart_script_runs_end_to_end_on_the_emulator() -> None:
    """``scripts/quickstart.sh``, the README's command, minus uv (the suite's venv is used)."""
    try:
        find_launcher()
    except EmulatorError as exc:
        pytest.fail(f"the quickstart needs the Pub/Sub emulator: {exc}", pytrace=False)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RELAY_", "PUBSUB_", "QUICKSTART_"))}
    env["QUICKSTART_VENV"] = sys.prefix
    # The script gives up by itself well within this test's timeout, cleaning up.
    env["QUICKSTART_READY_TIMEOUT"] = "90"
    env["QUICKSTART_HANDLED_TIMEOUT"] = "60"

    script = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "quickstart.sh")], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        stdout, stderr = script.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        script.terminate()  # SIGTERM: its trap stops the worker and the emulator
        stdout, stderr = script.communicate(timeout=60)
        pytest.fail(f"quickstart.sh did not finish:\n{stdout}{stderr}")

    output = stdout + stderr
    assert script.returncode == 0, output
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("quickstart OK: 5 messages published, 7 handled"), output
    for handled in (
        "order 1: confirmation sent to ada@example.com",
        "order 3: reserved 3 x cake",
        "photo alps.jpg: panorama made (landscape)",
        "on quickstart-photos skipped",
        "SIGTERM received: stopping gracefully",
        "worker stopped",
    ):
        assert handled in output
    assert "cat.jpg: panorama" not in output


# ------------------------------------------------------- on the memory transport
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


@pytest.fixture
def isolated_imports() -> Iterator[None]:
    """Each example has a ``subs`` module: forget it (and sys.path changes) afterwards."""
    path = list(sys.path)
    yield
    for name in [n for n in sys.modules if n == "subs" or n.startswith("subs.")]:
        del sys.modules[name]
    sys.path[:] = path


def run_example(
    directory: str, messages: list[tuple[str, Any, dict[str, str]]], expected: int, **settings: Any
) -> list[tuple[str, Any, Outcome]]:
    """Discover the example's subscriptions, publish, and run a Worker until ``expected``."""
    config = Settings(transport="memory", **settings)
    subscriptions = discover(EXAMPLES / directory, settings=config)
    transport = MemoryTransport()
    outcomes = Outcomes()
    worker = Worker(
        subscriptions, settings=config, transport=transport,
        middleware=MiddlewareChain([outcomes]),
    )
    with worker:
        publisher = Publisher(transport, settings=config)
        for topic, data, attrs in messages:
            publisher.publish(topic, data, blocking=True, attrs=attrs)
        return outcomes.wait(expected)


@pytest.mark.usefixtures("isolated_imports")
def test_quickstart_handlers_filters_and_async() -> None:
    order = {"id": 1, "email": "ada@example.com", "item": "coffee", "quantity": 2}
    seen = run_example(
        "quickstart",
        [
            ("orders", order, {}),
            ("photos", {"name": "alps.jpg"}, {"orientation": "landscape"}),
            ("photos", {"name": "cat.jpg"}, {"orientation": "portrait"}),
        ],
        expected=4,
        sub_prefix="quickstart",
    )

    by_result = sorted((name, data.get("name", data.get("id")), o.status.value)
                       for name, data, o in seen)
    assert by_result == [
        ("quickstart-orders", 1, "success"),
        ("quickstart-orders-stock", 1, "success"),
        ("quickstart-photos", "alps.jpg", "success"),
        ("quickstart-photos", "cat.jpg", "skipped"),
    ]


@pytest.mark.usefixtures("isolated_imports")
def test_class_based_subscriptions() -> None:
    seen = run_example(
        "class_based",
        [("photo-uploaded", {"name": "alps.jpg"}, {}), ("avatar-uploaded", {"user": "ada"}, {})],
        expected=2,
    )

    results = sorted((name, outcome.result) for name, _, outcome in seen)
    assert results == [
        ("avatar-uploaded-thumbnails", "thumbnails/64x64/ada.png"),
        ("photo-uploaded-thumbnails", "thumbnails/128x128/alps.jpg"),
    ]
