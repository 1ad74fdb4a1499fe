"""``relay-cli emulator``: the emulator in the foreground, stopped by PID on a signal."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from tests.cli.conftest import Project
from tests.cli.test_process import Running


@pytest.mark.emulator
def test_emulator_command_prints_the_address_and_stops_on_sigterm(project: Project) -> None:
    cli = Running(project, "emulator")
    cli.wait_for("Ctrl-C to stop")
    export = next(line for line in cli.output().splitlines() if line.startswith("export "))
    address = export.removeprefix("export PUBSUB_EMULATOR_HOST=")
    host, port = address.rsplit(":", 1)
    pid = int(cli.output().split("(pid ", 1)[1].split(")", 1)[0])
    with socket.create_connection((host, int(port)), timeout=5):
        pass  # the emulator is listening where the export line says

    cli.process.send_signal(signal.SIGTERM)

    assert cli.finish() == 0, cli.output()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the Java server is gone, not just the CLI
