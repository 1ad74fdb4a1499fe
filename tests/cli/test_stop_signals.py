"""A second stop signal abandons the drain wherever it lands in ``relay-cli run``'s
main thread: in a log line, in the wait for the first, or during the drain."""

from __future__ import annotations

import argparse
import io
import logging
import signal
import threading

import pytest

import relay
from relay import BaseMiddleware, sub
from relay.cli import execute
from relay.commands import _run_worker
from relay.settings import Settings
from relay.stop_signals import ForcedExit, StopSignals


def test_a_forced_stop_that_cannot_leave_is_ended_by_the_watchdog() -> None:
    exits: list[int] = []
    signals = StopSignals(force_grace=0.05, force_exit=exits.append)
    signals._handle(signal.SIGTERM, None)
    with pytest.raises(ForcedExit):
        signals._handle(signal.SIGINT, None)  # ... and nothing acts on it

    assert signals._watchdog is not None
    signals._watchdog.join(5)
    assert exits == [1]


def test_a_second_signal_during_a_log_line_is_not_swallowed_by_logging() -> None:
    """Inside a handler's emit, logging catches Exception (CI saw a forced stop
    absorbed that way)."""
    exits: list[int] = []
    signals = StopSignals(force_grace=0.2, force_exit=exits.append)
    signals._handle(signal.SIGTERM, None)

    class Interrupted(io.StringIO):
        def write(self, text: str) -> int:
            signals._handle(signal.SIGTERM, None)  # the second signal, mid-write
            return super().write(text)

    log = logging.getLogger("relay.tests.forced")
    handler = logging.StreamHandler(Interrupted())
    log.addHandler(handler)
    log.propagate = False
    try:
        with pytest.raises(ForcedExit):
            log.warning("stopping worker")
    finally:
        log.removeHandler(handler)
        signals.__exit__(None, None, None)  # cancels the watchdog
    assert signals._watchdog is not None
    signals._watchdog.join(5)
    assert exits == []  # leaving the with block cancelled the watchdog


def test_a_second_signal_while_the_first_is_being_logged_forces_the_stop() -> None:
    """The handler can run again inside itself; the stop is requested before the
    first line is written, so the second call forces."""
    signals = StopSignals(force_exit=lambda code: None)

    class Nested(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "stopping gracefully" in record.getMessage():
                signals._handle(signal.SIGTERM, None)

    log = logging.getLogger("relay.cli")
    nested, level = Nested(), log.level
    log.addHandler(nested)
    log.setLevel(logging.INFO)
    try:
        with pytest.raises(ForcedExit):
            signals._handle(signal.SIGTERM, None)
    finally:
        log.removeHandler(nested)
        log.setLevel(level)
        signals.__exit__(None, None, None)


def test_a_second_signal_before_the_drain_began_does_not_start_one() -> None:
    """Both signals heard while the main thread still waits for the first (it looks
    every 50 ms): the drain (DRAIN_TIMEOUT) must not run before leaving."""
    started, release = threading.Event(), threading.Event()
    hooks: list[str] = []
    workers: list[relay.Worker] = []

    @sub(topic="stuck-jobs")
    def stuck(data: object, **attrs: str) -> None:
        started.set()
        release.wait(30)

    class Hooks(BaseMiddleware):
        def post_worker_start(self, worker: relay.Worker) -> None:
            workers.append(worker)

        def pre_worker_stop(self, worker: object) -> None:
            hooks.append("pre_worker_stop")

    class TwoSignals(StopSignals):
        def wait(self, parent: int | None = None) -> None:
            workers[0].transport.publish("stuck-jobs", b"{}", {})
            assert started.wait(10), "the handler never started"
            self._handle(signal.SIGTERM, None)
            self._handle(signal.SIGTERM, None)

    settings = Settings.load(
        environ={}, transport="memory", gc_project_id="relay-test", drain_timeout=2,
        middleware=[Hooks()],
    )
    signals = TwoSignals(force_exit=lambda code: None)
    try:
        with pytest.raises(ForcedExit, match="SIGTERM received again"):
            _run_worker(settings, [stuck], signals)
        assert hooks == []  # worker.stop() never began: no drain
    finally:
        signals.__exit__(None, None, None)
        release.set()
        relay.reset()


def test_a_forced_stop_outside_run_is_one_error_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``relay-cli emulator`` hears signals too; ForcedExit is no RelayError, and must
    still end as one line, not a traceback."""

    def stopped_twice(args: argparse.Namespace) -> int:
        raise ForcedExit("SIGINT received again: abandoning the drain")

    args = argparse.Namespace(func=stopped_twice, log_level="INFO")

    assert execute(args) == 1
    assert capsys.readouterr().err == (
        "relay-cli: error: SIGINT received again: abandoning the drain\n"
    )
