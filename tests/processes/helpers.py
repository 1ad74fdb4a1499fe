"""``relay-cli run --processes N`` as a subprocess, for the tests beside this module.

``Supervised`` starts it on the app in ``app/`` (the handler writes ``start``
and ``done`` lines with its pid), its stdout and stderr going to one log;
``publish`` sends ``{"id": N, ...}`` messages straight to the emulator.
Loopback only: the health ports are free ones, the emulator is relay's server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from relay.cli import READY
from relay.health import read_probe

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


class Supervised:
    """``python -m relay.cli run --processes N --root tests/processes/app ...``."""

    def __init__(self, log: Path, env: dict[str, str], *args: str) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relay.cli", "run", "--root", str(APP_ROOT), *args],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if self.process.poll() is not None:
                pytest.fail(f"the supervisor exited {self.process.returncode} while waiting for "
                            f"{what}:\n{self.output()[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}:\n"
                            f"{self.output()[-6000:]}")
            time.sleep(0.05)
        return value

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

    def finish(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the supervisor did not exit within {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of the supervisor's process group as a last resort."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(45)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)

    def __enter__(self) -> Supervised:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
