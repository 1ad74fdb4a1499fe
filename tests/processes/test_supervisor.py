"""``relay.processes`` and ``relay.process_health`` without processes: the option, the
restart backoff, the aggregated probes, the child's command line and log tags."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from relay.cli import build_parser, main
from relay.commands import EXIT_CONFIG, Source
from relay.logs import JsonFormatter, TextFormatter
from relay.process_child import child_command, cpu_count, tag_child_logs
from relay.process_health import WorkerRun, WorkerSlot, answer, worker_status
from relay.processes import CRASH_LOOP, HEALTHY_AFTER, Supervisor, restart_delay
from relay.settings import Settings
from relay.stop_signals import ForcedExit, StopSignals


class FakeProcess:
    """What the supervisor uses of a ``Popen``: a pid, an exit code, signals."""

    def __init__(self, pid: int, code: int | None = None) -> None:
        self.pid = pid
        self.returncode = code
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)


def run_of(pid: int, started: float = 0.0, code: int | None = None, **fields: Any) -> WorkerRun:
    return WorkerRun(FakeProcess(pid, code), started, **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the option
def test_processes_takes_a_count_or_auto_and_defaults_to_1() -> None:
    parse = build_parser().parse_args
    assert parse(["run"]).processes == 1
    assert parse(["run", "--processes", "3"]).processes == 3
    assert parse(["run", "--processes", "auto"]).processes == cpu_count()
    assert cpu_count() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_processes_value_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--processes", value]) == 2
    assert "give 1 or more, or auto" in capsys.readouterr().err


def test_embedding_frameworks_do_not_offer_processes() -> None:
    source = Source("flask relay", Settings.load, lambda s: [], "in the app")
    with pytest.raises(SystemExit):
        build_parser("flask relay", source).parse_args(["run", "--processes", "2"])


def test_a_child_runs_relay_cli_run_with_provisioning_off_and_a_loopback_probe() -> None:
    args = argparse.Namespace(root="app", log_level="DEBUG", settings="my.settings",
                              log_format="json", subs=["a.subs", "b.subs"])
    command = child_command(args, 2)
    assert command[1:4] == ["-m", "relay.cli", "run"]
    text = " ".join(command)
    for part in ("--provisioning off", "--health-port 0", "--worker-index 2",
                 f"--supervisor-pid {os.getpid()}", f"--root {os.path.abspath('app')}",
                 "--settings my.settings", "--log-format json", "--log-level DEBUG"):
        assert part in text
    assert command[-3:] == ["--subs", "a.subs", "b.subs"]


# ------------------------------------------------------------- stop signals
def test_a_worker_process_ignores_a_repeated_stop_signal_and_stops_when_orphaned() -> None:
    alone = StopSignals(force_exit=lambda code: None)
    alone._handle(signal.SIGTERM, None)
    with pytest.raises(ForcedExit):
        alone._handle(signal.SIGINT, None)
    alone.__exit__(None, None, None)  # cancels the watchdog the second signal armed

    child = StopSignals(escalate=False)
    assert child.requested.wait(0.05) is False
    child._handle(signal.SIGINT, None)
    child._handle(signal.SIGTERM, None)  # the same stop, forwarded by the supervisor
    assert child.requested.wait(0) is True

    orphan = StopSignals(escalate=False)
    orphan.wait(parent=os.getppid() + 1)  # "the supervisor is gone": returns
    assert orphan.requested.is_set()


# ------------------------------------------------------------------ restarts
def supervisor(count: int = 1) -> Supervisor:
    settings = Settings.load(environ={}, transport="memory", health_failure_threshold=10)
    return Supervisor(argparse.Namespace(), settings, [], StopSignals(), count=count)


def test_restart_backoff_doubles_from_1_to_60_s() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_crashing_worker_is_restarted_with_backoff_a_crash_loop_is_named_and_reset(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    boss = supervisor()
    child = boss.children[0]

    def spawn(slot: WorkerSlot) -> None:  # a process that has already crashed
        slot.restart_at, slot.run = None, run_of(100 + slot.restarts, now, code=1)

    monkeypatch.setattr(boss, "_spawn", spawn)
    now = 1000.0
    child.run = run_of(100, now, code=1)
    delays = []
    with caplog.at_level(logging.ERROR, "relay.processes"):
        for _ in range(8):
            assert boss._tend(child, now) is None  # sees the exit
            assert child.restart_at is not None and child.run is None
            delays.append(child.restart_at - now)
            now = child.restart_at
            boss._tend(child, now)  # restarts it
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert child.restarts == 8
    loops = [r.getMessage() for r in caplog.records if "crash-looping" in r.getMessage()]
    assert len(loops) == 8 - CRASH_LOOP + 1
    assert f"{CRASH_LOOP} exits in a row" in loops[0]

    # One that consumed for HEALTHY_AFTER seconds before dying starts over at 1 s.
    assert child.run is not None
    child.run.consuming = True
    now += HEALTHY_AFTER + 1
    boss._tend(child, now)
    assert child.restart_at == now + 1


def test_a_configuration_error_is_not_restarted() -> None:
    boss = supervisor()
    child = boss.children[0]
    child.run = run_of(100, code=EXIT_CONFIG)
    assert boss._tend(child, 5.0) == EXIT_CONFIG
    assert child.restart_at is None


def test_a_worker_that_is_not_live_is_stopped_to_be_restarted() -> None:
    boss = supervisor()
    child = boss.children[0]
    stuck = {"started": True, "stopping": False, "supervisor_alive": True, "subscriptions": [
        {"name": "orders", "state": "restarting", "unhealthy_for": 11.0, "last_error": "boom"}]}
    child.run = run = run_of(100, body=stuck, answered=49.0)
    boss._tend(child, 50.0)
    assert run.process.signals == [signal.SIGTERM]  # type: ignore[attr-defined]
    assert "subscription orders has been restarting for 11 s" in run.why

    silent = boss.children[0].run = run_of(101, started=0.0)  # never answered its probe
    boss._tend(child, 11.0)
    assert silent.process.signals == [signal.SIGTERM]  # type: ignore[attr-defined]
    assert "its probes have not answered for 11 s" in silent.why


# ------------------------------------------------------------ the probes
OK_BODY = {"probe": "readyz", "ok": True, "reasons": [], "started": True, "inflight": 2,
           "subscriptions": [{"name": "orders", "state": "open"}]}


def status(*slots: WorkerSlot, now: float = 10.0, **fields: Any) -> dict[str, Any]:
    return {"stopping": False, "provisioned": True, **fields,
            "workers": [worker_status(slot, now) for slot in slots]}


def test_readyz_is_ok_only_when_every_worker_is_and_names_each_one_that_is_not() -> None:
    one = WorkerSlot(1, run=run_of(11, consuming=True, body=OK_BODY, answered=9.0))
    two = WorkerSlot(2, restarts=3, restart_at=13.0, last_exit="was killed by SIGKILL")
    body = answer("readyz", status(one, two), not_live=None)
    assert not body["ok"]
    assert body["reasons"] == ["worker 2 was killed by SIGKILL; restarting it in 3.0 s"]
    first, second = body["workers"]
    assert first == {
        "index": 1, "pid": 11, "state": "running", "restarts": 0, "last_exit": None,
        "uptime": 10.0, "ready": True, "reasons": [],
        "status": {"started": True, "inflight": 2, "subscriptions": OK_BODY["subscriptions"]},
    }
    assert second["state"] == "restarting" and second["pid"] is None and not second["ready"]

    connecting = {**OK_BODY, "ok": False, "reasons": ["subscription orders is connecting"]}
    two.run, two.restart_at = run_of(22, consuming=True, body=connecting, answered=9.5), None
    assert answer("readyz", status(one, two), not_live=None)["reasons"] == [
        "worker 2 (pid 22): subscription orders is connecting"]

    two.run = run_of(22, consuming=True, body=OK_BODY, answered=9.5)
    assert answer("readyz", status(one, two), not_live=None)["ok"]
    assert answer("readyz", status(one, two, now=16.0), not_live=None)["reasons"] == [
        "worker 1 (pid 11) has not answered its probe for 7 s",
        "worker 2 (pid 22) has not answered its probe for 6 s"]
    stopping = answer("readyz", status(one, two, stopping=True), not_live=None)
    assert stopping["reasons"] == ["the supervisor is stopping"]


def test_livez_fails_only_for_the_supervisor_itself() -> None:
    crashed = WorkerSlot(1, restart_at=20.0, last_exit="exited with code 1")
    assert answer("livez", status(crashed), not_live=None)["ok"]
    body = answer("livez", status(crashed), not_live="the workers have stopped")
    assert not body["ok"] and body["reasons"] == ["the workers have stopped"]
    with pytest.raises(ValueError):
        answer("healthz", status(crashed), not_live=None)


# ---------------------------------------------------------------- log tags
@pytest.fixture
def root_handler() -> Iterator[logging.StreamHandler[io.StringIO]]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    handler = logging.StreamHandler(io.StringIO())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_a_childs_text_logs_say_which_worker_wrote_them(
    root_handler: logging.StreamHandler[io.StringIO],
) -> None:
    root_handler.setFormatter(TextFormatter())
    tag_child_logs(3)
    logging.getLogger("relay.worker").info("hello")
    text = root_handler.stream.getvalue()
    assert f"INFO    [worker 3 pid {os.getpid()}] relay.worker: hello" in text


def test_a_childs_json_logs_carry_worker_and_pid(
    root_handler: logging.StreamHandler[io.StringIO],
) -> None:
    root_handler.setFormatter(JsonFormatter())
    tag_child_logs(2)
    logging.getLogger("relay.worker").info("hello")
    line = json.loads(root_handler.stream.getvalue())
    assert (line["event"], line["worker"], line["pid"]) == ("hello", 2, os.getpid())
