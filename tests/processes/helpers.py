"""``relay-cli run --processes N`` as a subprocess, for the tests beside this module.

``Supervised`` starts it on the app in ``app/`` (the handler writes ``start``
and ``done`` lines with its pid), its stdout and stderr going to one log;
``publish`` sends ``{"id": N, ...}`` messages straight to the emulator.
Loopback only: the health ports are free ones, the emulator is relay's server.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relay.cli import READY
from relay.health import read_probe
from tests.support.processes import LoggedProcess

APP_ROOT = Path(__file__).resolve().parent / "app"
REPO_ROOT = APP_ROOT.parent.parent.parent
PROJECT = "relay-tests"

#: Two messages held per stream, two handlers per process: both processes get work.
SETTINGS = {"FLOW_MAX_MESSAGES": 2, "CONCURRENCY": 2, "ACK_DEADLINE": 10, "DRAIN_TIMEOUT": 20}


def env_for(topic: str, records: Path, **extra: str) -> dict[str, str]:
    """The supervisor's environment: the test's own ``RELAY_*`` dropped, ``SETTINGS`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update({f"RELAY_{key}": str(value) for key, value in SETTINGS.items()})
    env.update(
        RELAY_GC_PROJECT_ID=PROJECT, PROCESSES_TOPIC=topic,
        PROCESSES_RECORDS=str(records), NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:1",
    )
    env.update(extra)
    return env


class Supervised(LoggedProcess):
    """``python -m relay.cli run --processes N --root tests/processes/app ...``."""

    name = "the supervisor"
    tail = 6000
    grace = 45.0

    def __init__(self, log: Path, env: dict[str, str], *args: str) -> None:
        super().__init__(
            [sys.executable, "-m", "relay.cli", "run", "--root", str(APP_ROOT), *args], log,
            cwd=REPO_ROOT, env=env,
        )

    def wait_ready(self) -> None:
        self.wait_until(lambda: READY in self.output(), "READY")

    def health_url(self) -> str:
        line = self.wait_until(
            lambda: next((s for s in self.output().splitlines() if "health probes at" in s), ""),
            "the health address",
        )
        return str(line.split("health probes at ", 1)[1].split("/livez", 1)[0])

    def readyz(self) -> tuple[int, dict[str, Any]]:
        return read_probe(self.health_url(), "readyz", timeout=5)


def publish(address: str, topic: str, messages: Iterable[dict[str, Any]]) -> None:
    """Publish each message (JSON) to ``topic`` on the emulator at ``address``; wait for all."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(address)
    client = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
    try:
        path = client.topic_path(PROJECT, topic)
        futures = [client.publish(path, json.dumps(m).encode()) for m in messages]
        for future in futures:
            future.result(timeout=30)
    finally:
        client.stop()
        channel.close()


def records(path: Path) -> list[tuple[str, int, int]]:
    """``(kind, id, pid)`` for every complete line the handler wrote."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = [line.split() for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return [(kind, int(ident), int(pid)) for kind, ident, pid in lines]


def done(path: Path) -> dict[int, int]:
    """``{id: pid}`` of every message whose handler finished."""
    return {ident: pid for kind, ident, pid in records(path) if kind == "done"}
