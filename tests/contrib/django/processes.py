"""A ``manage.py`` command run as a child process, with its output read as it comes
(the READY line and the emulator line are waited for), and stopped by SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest


class Managed:
    """``python manage.py ARGS`` in ``cwd``; stdout lines on a queue, stderr kept."""

    def __init__(self, manage: Path, *args: str, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(manage), *args], cwd=manage.parent, env=dict(env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def wait_for_line(self, prefix: str, timeout: float = 60.0) -> str:
        """The first stdout line starting with ``prefix``; fails the test at the deadline
        or if the process ends first."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.process.wait(10)
                pytest.fail(f"exited with {self.process.returncode} before {prefix!r}:\n"
                            f"{self.output()}")
            if line.startswith(prefix):
                return line.rstrip("\n")
        pytest.fail(f"no line starting with {prefix!r} within {timeout} s:\n{self.output()}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, and the exit code (a process that does not stop in time is killed
        and fails the test)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            pytest.fail(f"did not stop within {timeout} s of SIGTERM:\n{self.output()}")

    def __enter__(self) -> Managed:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:  # the test failed half-way: leave nothing behind
            self.process.send_signal(signal.SIGTERM)  # stops an emulator it started, too
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment without relay's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(extra)
    return env
