"""A command run in the background for a test, its stdout and stderr going to one log file.

``LoggedProcess`` starts it (stdin from /dev/null), reads what it wrote so far
(``output``), waits for a condition on it or for a text in it (``wait_until``,
``wait_for``; either fails the test if the process exits first or the time runs
out), waits for its exit (``finish``) and stops it (``stop``: SIGTERM, then
SIGKILL after ``grace`` seconds; leaving a ``with`` block does the same).

Subclasses and callers tune what a failure says: ``name`` (who exited), ``tail``
(how many characters of the log a message shows; 0 for all) and ``fail`` (how
the test is failed: ``pytest.fail`` unless overridden).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

T = TypeVar("T")
P = TypeVar("P", bound="LoggedProcess")


class LoggedProcess:
    """``command`` run in ``cwd`` with ``env``, its output in the file ``log``."""

    #: The process, as failure messages name it.
    name = "the process"
    #: How many characters of the log's end a failure message shows (0: all of it).
    tail = 0
    #: Seconds from SIGTERM to SIGKILL in ``stop``.
    grace = 30.0
    #: Seconds between looks at the log while waiting.
    poll = 0.05

    def __init__(
        self, command: Sequence[str], log: Path, *, cwd: Path, env: Mapping[str, str],
        preexec_fn: Callable[[], Any] | None = None, name: str | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                list(command), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=preexec_fn,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def shown(self) -> str:
        """The log, or its last ``tail`` characters, for a failure message."""
        output = self.output()
        return output[-self.tail:] if self.tail else output

    def fail(self, message: str) -> NoReturn:
        pytest.fail(message)

    def wait_until(self, predicate: Callable[[], T], what: str, timeout: float = 60.0) -> T:
        """``predicate()``'s first true value; fails if the process exits first or
        after ``timeout`` seconds (stopping the process first)."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if self.process.poll() is not None:
                self.fail(f"{self.name} exited {self.process.returncode} while waiting for "
                          f"{what}:\n{self.shown()}")
            if time.monotonic() > deadline:
                self.stop()
                self.fail(f"timed out after {timeout} s waiting for {what}:\n{self.shown()}")
            time.sleep(self.poll)
        return value

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Until ``text`` is in the output."""
        self.wait_until(lambda: text in self.output(), f"{text!r} in its output", timeout)

    def finish(self, timeout: float = 60.0) -> int:
        """The exit code; fails (stopping the process) if it has not exited within ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            self.fail(f"{self.name} did not exit within {timeout} s:\n{self.shown()}")

    def stop(self) -> int:
        """SIGTERM (so that it can stop what it started), SIGKILL after ``grace``
        seconds as a last resort; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(15)

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
