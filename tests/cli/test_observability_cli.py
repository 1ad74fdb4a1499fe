"""``relay-cli run`` with ``--health-port`` and ``--log-format``, as a real process."""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from relay.cli import READY
from tests.cli.conftest import Project
from tests.cli.test_process import Running
from tests.keys import service_account_key

SUBS = """
from relay import BaseMiddleware, sub

@sub(topic="orders")
def on_order(data, **attrs):
    pass

class Kick(BaseMiddleware):
    '''Puts one message on the worker's own (memory) transport once it is running.'''

    def post_worker_start(self, worker):
        worker.transport.publish("orders", b'{"id": 1}', {})

RELAY = {"MIDDLEWARE": ["relay.contrib.logging_middleware.LoggingMiddleware", Kick()]}
"""

HEALTH_LINE = re.compile(r"relay-cli: health probes at (http://\S+)/livez and \S+/readyz")


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def health_url(cli: Running) -> str:
    cli.wait_for("relay-cli: health probes at")
    match = HEALTH_LINE.search(cli.output())
    assert match, cli.output()
    return match.group(1)


def test_run_with_health_port_0_serves_the_probes_then_stops_on_sigterm(
    project: Project,
) -> None:
    project.write("subs.py", SUBS)
    cli = Running(project, "run", "--settings", "subs", "--health-port", "0")
    base = health_url(cli)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0  # loopback, and the port actually picked
    cli.wait_for(READY)

    status, ready = get(base + "/readyz")
    assert status == 200, ready
    assert [(s["name"], s["state"]) for s in ready["subscriptions"]] == [("orders", "open")]
    assert get(base + "/livez")[0] == 200
    assert get(base + "/metrics")[0] == 404

    cli.process.send_signal(signal.SIGTERM)

    assert cli.finish() == 0, cli.output()
    assert "worker stopped" in cli.output()
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()


def test_health_port_comes_from_the_setting_and_is_off_by_default(project: Project) -> None:
    project.write("subs.py", SUBS)
    cli = Running(project, "run", "--settings", "subs", env={"RELAY_HEALTH_PORT": "0"})
    base = health_url(cli)
    cli.wait_for(READY)
    assert get(base + "/readyz")[0] == 200
    cli.process.send_signal(signal.SIGTERM)
    assert cli.finish() == 0, cli.output()

    plain = Running(project, "run", "--settings", "subs")
    plain.wait_for(READY)
    plain.process.send_signal(signal.SIGTERM)
    assert plain.finish() == 0, plain.output()
    assert "health probes" not in plain.output()


def test_a_bad_or_taken_health_port_stops_the_command(project: Project) -> None:
    project.write("subs.py", SUBS)

    bad = project.cli("run", "--settings", "subs", "--health-port", "70000")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("relay-cli: error: HEALTH_PORT")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = project.cli("run", "--settings", "subs", "--health-port", str(port))
    assert busy.returncode == 1, busy.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert READY not in busy.stdout


def json_records(output: str) -> list[dict[str, Any]]:
    """Every log line as JSON; the CLI's own printed lines start with ``relay-cli:``."""
    lines = [line for line in output.splitlines() if not line.startswith("relay-cli:")]
    return [json.loads(line) for line in lines]


def test_log_format_json_writes_one_object_per_line(project: Project) -> None:
    project.write("subs.py", SUBS)
    # Unbuffered, as in many containers: the CLI's own lines must still not split a log line.
    cli = Running(
        project, "run", "--settings", "subs", "--log-format", "json",
        env={"PYTHONUNBUFFERED": "1"},
    )
    cli.wait_for('"subscription":"orders"')
    cli.process.send_signal(signal.SIGTERM)
    assert cli.finish() == 0, cli.output()

    records = json_records(cli.output())  # fails if any log line is not JSON
    for record in records:
        assert {"timestamp", "level", "logger", "event"} <= set(record)
    [processed] = [r for r in records if r.get("operation") == "process"]
    assert processed["logger"] == "relay.events" and processed["level"] == "INFO"
    assert processed["topic"] == "orders" and processed["subscription"] == "orders"
    assert processed["message_id"] == "1" and processed["status"] == "success"
    assert processed["duration_ms"] >= 0
    events = [r["event"] for r in records]
    assert "SIGTERM received: stopping gracefully (send it again to force)" in events
    assert "worker stopped" in events


def test_log_format_setting_and_the_flag_that_overrides_it(project: Project) -> None:
    project.write("subs.py", SUBS)
    env = {"RELAY_LOG_FORMAT": "json"}

    from_setting = Running(project, "run", "--settings", "subs", env=env)
    from_setting.wait_for(READY)
    from_setting.process.send_signal(signal.SIGTERM)
    assert from_setting.finish() == 0, from_setting.output()
    assert any(r["event"] == "worker stopped" for r in json_records(from_setting.output()))

    flag = Running(project, "run", "--settings", "subs", "--log-format", "text", env=env)
    flag.wait_for(READY)
    flag.process.send_signal(signal.SIGTERM)
    assert flag.finish() == 0, flag.output()
    assert re.search(r"^\d\d:\d\d:\d\d INFO    relay\.worker: worker stopped$",
                     flag.output(), re.MULTILINE), flag.output()
    assert '"event"' not in flag.output()


def test_debug_logs_of_a_worker_with_credentials_hold_no_key(
    project: Project, tmp_path: Path
) -> None:
    project.write("subs.py", SUBS)
    info, pem = service_account_key()
    secret = json.dumps(info)
    cli = Running(
        project, "run", "--settings", "subs", "--log-level", "DEBUG", "--log-format", "json",
        "--health-port", "0", env={"RELAY_GC_CREDENTIALS_JSON": secret},
    )
    base = health_url(cli)
    cli.wait_for(READY)
    assert get(base + "/readyz")[0] == 200
    cli.process.send_signal(signal.SIGTERM)
    assert cli.finish() == 0, cli.output()

    output = cli.output()
    assert json_records(output)
    body = "".join(pem.splitlines()[1:-1])
    assert "PRIVATE KEY" not in output
    assert not [body[i:i + 24] for i in range(0, len(body) - 24, 24) if body[i:i + 24] in output]
