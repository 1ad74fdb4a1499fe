"""Fixtures for the conformance suite (see ``tests/conformance/__init__.py``).

``conformance_server`` starts each server once per session, parametrised
``["relay", "google"]``: relay's server as a separate process
(``python -m relay.server``, stopped with SIGTERM, which must exit 0) and
Google's emulator through ``relay.emulator.Emulator``. A server that cannot
start FAILS every test that needs it, with the reason: never a skip.

``PUBSUB_EMULATOR_HOST`` and ``PUBSUB_PROJECT_ID`` point at the server only
while a test runs (``clients`` sets them and restores them), so other suites
in the same session keep theirs.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from google.cloud import pubsub_v1

from relay.emulator import Emulator, EmulatorError, free_port
from tests.conformance.helpers import PROJECT, SERVERS, Clients, Server

READY_LINE = "relay Pub/Sub server listening on "
START_TIMEOUT = 30.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "conformance: a scenario run against relay's Pub/Sub server and Google's emulator "
        "through the unmodified google-cloud-pubsub client",
    )


class RelayServerProcess:
    """``python -m relay.server`` on a free port, as the CLI would run it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._output: list[str] = []

    def start(self) -> RelayServerProcess:
        port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relay.server", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait(5)
                raise RuntimeError(
                    f"relay's server exited with code {self.process.returncode} before "
                    f"listening; its output: {self.output()}"
                )
            if line.startswith(READY_LINE):
                self.address = line[len(READY_LINE):].strip()
                return self
        raise RuntimeError(
            f"relay's server did not print {READY_LINE!r} within {START_TIMEOUT} s; "
            f"its output: {self.output()}"
        )

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def output(self, limit: int = 2000) -> str:
        return "".join(self._output)[-limit:] or "<none>"

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started)."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
                return None
        return proc.returncode


@pytest.fixture(scope="session", params=SERVERS, ids=SERVERS)
def conformance_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    name: str = request.param
    if name == "google":
        emulator = Emulator(kind="google")
        try:
            emulator.start()
        except EmulatorError as exc:
            pytest.fail(f"Google's Pub/Sub emulator could not be started: {exc}", pytrace=False)
        try:
            yield Server("google", emulator.address)
        finally:
            emulator.stop()
        return
    relay_server = RelayServerProcess()
    try:
        relay_server.start()
    except (OSError, RuntimeError) as exc:
        relay_server.stop()
        pytest.fail(f"relay's Pub/Sub server could not be started: {exc}", pytrace=False)
    try:
        yield Server("relay", relay_server.address)
    finally:
        code = relay_server.stop()
    if code != 0:
        pytest.fail(
            f"relay's server did not exit 0 on SIGTERM (exit code {code}; None: it had to be "
            f"killed); its output: {relay_server.output()}", pytrace=False,
        )


@pytest.fixture
def clients(conformance_server: Server) -> Iterator[Clients]:
    """A publisher and a subscriber on the server; the environment restored after."""
    saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID")}
    os.environ["PUBSUB_EMULATOR_HOST"] = conformance_server.address
    os.environ["PUBSUB_PROJECT_ID"] = PROJECT
    made = Clients(conformance_server, pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient())
    try:
        yield made
    finally:
        made.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

