"""relay-cli as a process: fast help, and signals mapped to exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Project
from tests.support.processes import LoggedProcess

HELP_IMPORTS = """
import contextlib, io, sys
import relay.cli
for args in (["--help"], ["run", "--help"], ["subs", "--help"], ["publish", "--help"],
             ["emulator", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert relay.cli.main(args) == 0, args
    assert "usage: relay-cli" in out.getvalue(), args
print(sorted(m for m in sys.modules if m.startswith(("google", "grpc"))))
"""


def test_help_does_not_import_google_cloud_pubsub(project: Project) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS], env=project.env(), capture_output=True,
        text=True, timeout=60, check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # no google.cloud.pubsub_v1, no grpc


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Running(LoggedProcess):
    """``relay-cli ARGS`` started in the background, its output going to a file."""

    name = "relay-cli"
    grace = 15.0

    def __init__(
        self, project: Project, *args: str, env: dict[str, str] | None = None,
        ignore_sigint: bool = False,
    ) -> None:
        super().__init__(
            [sys.executable, "-m", "relay.cli", *args], project.root / "cli.log",
            cwd=project.root, env=project.env(env),
            preexec_fn=_ignore_sigint if ignore_sigint else None,
        )


SUBS = """
from relay import sub

@sub(topic="orders")
def on_order(data, **attrs):
    pass
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_a_signal_and_exits_0(project: Project, signum: int) -> None:
    project.write("subs.py", SUBS)
    cli = Running(project, "run")
    cli.wait_for("relay-cli: worker running")

    cli.process.send_signal(signum)

    assert cli.finish() == 0, cli.output()
    output = cli.output()
    assert f"{signal.Signals(signum).name} received: stopping gracefully" in output
    assert "worker stopped" in output


def test_run_started_with_sigint_ignored_leaves_it_ignored(project: Project) -> None:
    """Like a worker started with ``&`` by a shell script: the terminal's Ctrl-C is the
    script's to handle (it stops the worker with SIGTERM)."""
    project.write("subs.py", SUBS)
    cli = Running(project, "run", ignore_sigint=True)
    cli.wait_for("relay-cli: worker running")

    cli.process.send_signal(signal.SIGINT)
    cli.process.send_signal(signal.SIGTERM)

    assert cli.finish() == 0, cli.output()
    assert "SIGINT received" not in cli.output()
    assert "SIGTERM received: stopping gracefully" in cli.output()


STUCK = """
import sys, threading
from relay import BaseMiddleware, sub

release = threading.Event()

@sub(topic="slow-jobs")
def stuck(data, **attrs):
    print("handler started", flush=True)
    release.wait(300)

class Kick(BaseMiddleware):
    '''Puts one message on the worker's own (memory) transport once it is running.'''

    def post_worker_start(self, worker):
        worker.transport.publish("slow-jobs", b"{}", {})

RELAY = {"MIDDLEWARE": ["relay.contrib.logging_middleware.LoggingMiddleware", Kick()],
         "DRAIN_TIMEOUT": 300}
"""


def test_a_second_signal_abandons_the_drain_and_exits_1(project: Project) -> None:
    project.write("subs.py", STUCK)
    cli = Running(project, "run", "--settings", "subs")
    cli.wait_for("handler started")

    cli.process.send_signal(signal.SIGTERM)
    cli.wait_for("stopping gracefully")
    cli.process.send_signal(signal.SIGTERM)

    assert cli.finish() == 1, cli.output()
    assert "SIGTERM received again: abandoning the drain" in cli.output()


def test_run_reports_config_errors_without_a_traceback(project: Project) -> None:
    project.write("subs.py", SUBS)
    project.write("conf.py", "RELAY = {'ACK_DEADLINE': 5}\n")

    result = project.cli("run", "--settings", "conf")

    assert result.returncode == 2
    assert result.stderr.startswith("relay-cli: error: ACK_DEADLINE")
    assert "Traceback" not in result.stderr


def test_python_dash_m_and_the_console_script_agree(project: Project) -> None:
    script = Path(sys.executable).with_name("relay-cli")
    assert script.exists(), f"{script} is missing: is the project installed (uv sync)?"
    project.write("subs.py", SUBS)

    result = subprocess.run(
        [str(script), "subs"], cwd=project.root, env=project.env(), capture_output=True,
        text=True, timeout=60, check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "subs.on_order" in result.stdout
