"""examples/flask_app: enqueue through a route, poll the status route until done.

In memory with a real Worker, and on the emulator against a worker started with
``flask --app examples.flask_app relay run`` in another process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from examples.flask_app import create_app
from examples.flask_app.extensions import relay_ext
from relay.emulator import Emulator
from relay.testing import memory_app

ROOT = Path(__file__).resolve().parents[3]
READY = "flask relay: worker running"


def enqueue_and_poll(client: FlaskClient, wait_for: Callable[..., Any]) -> list[dict[str, Any]]:
    """Enqueue report 7 (2 pages) and report 8 (no pages: fails); poll until both end."""
    responses = [client.post("/reports/7?pages=2"), client.post("/reports/8?pages=0")]
    assert [r.status_code for r in responses] == [202, 202]
    ids = [r.get_json()["id"] for r in responses]
    assert [r.get_json()["status_url"] for r in responses] == [f"/tasks/{i}" for i in ids]

    def finished() -> list[dict[str, Any]] | None:
        bodies = [client.get(f"/tasks/{task_id}").get_json() for task_id in ids]
        done = all(b["status"] in ("succeeded", "failed") for b in bodies)
        return bodies if done else None

    bodies: list[dict[str, Any]] = wait_for(finished, timeout=60, what="both reports to end")
    return bodies


EXPECTED = [
    {"status": "succeeded",
     "result": {"report": 7, "pages": 2, "url": "https://reports.example.com/7.pdf"}},
    {"status": "failed",
     "error": "relay.errors.UnrecoverableError: report 8: a report needs at least one page"},
]
ANNOUNCED = "examples.flask_app: report 7 is ready at https://reports.example.com/7.pdf"


def strip_ids(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in body.items() if k != "id"} for body in bodies]


def test_example_in_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wait_for: Callable[..., Any],
) -> None:
    app = create_app({"RESULTS_DATABASE": str(tmp_path / "results.sqlite3")})
    printed: list[str] = []

    def announced() -> bool:
        printed.append(capsys.readouterr().out)
        return ANNOUNCED in "".join(printed)

    with memory_app(app.extensions["relay"].settings) as env, env.worker(
        relay_ext.subscriptions
    ):
        assert strip_ids(enqueue_and_poll(app.test_client(), wait_for)) == EXPECTED
        wait_for(announced, what="the report-events subscription")


@pytest.mark.emulator
@pytest.mark.timeout(180)
def test_example_against_flask_relay_run_on_the_emulator(
    pubsub_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    wait_for: Callable[..., Any],
) -> None:
    # The worker and this process share the emulator (PUBSUB_EMULATOR_HOST), a topic
    # prefix (the emulator outlives the test) and the results database.
    monkeypatch.setenv("RELAY_TOPIC_PREFIX", f"flask-{uuid.uuid4().hex[:8]}-")
    monkeypatch.setenv("FLASK_RESULTS_DATABASE", str(tmp_path / "results.sqlite3"))
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "examples.flask_app", "relay", "run"],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def output() -> str:
        return log.read_text()

    def ready() -> bool:
        assert worker.poll() is None, f"the worker exited {worker.returncode}:\n{output()}"
        return READY in output()

    try:
        wait_for(ready, timeout=90, what=f"{READY!r} in the worker's output")
        app = create_app()
        assert strip_ids(enqueue_and_poll(app.test_client(), wait_for)) == EXPECTED
        wait_for(lambda: ANNOUNCED in output(), what="the report-events subscription")

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, output()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "SIGTERM received: stopping gracefully" in output()
    assert "worker stopped" in output()
