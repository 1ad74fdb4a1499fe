"""``examples/django_project`` as its README runs it: ``migrate``, ``runrelay
--emulator`` (its own emulator), ``relay.publish`` from ``manage.py shell`` in
another process, the row in its SQLite file, SIGTERM, exit 0.

The example is another Django project, and Django is set up once per process,
so everything here runs in child processes."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.contrib.django.processes import Managed, child_environment
from tests.support.emulators import require_emulator

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "django_project"
MANAGE = EXAMPLE / "manage.py"
PUBLISH = (
    "import relay; relay.publish('orders', {'id': 1, 'email': 'ada@example.com'}, "
    "source='shell', blocking=True)"
)


def manage(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(MANAGE), *args], cwd=EXAMPLE, env=env, capture_output=True,
        text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.emulator
@pytest.mark.timeout(240)
def test_django_example_runs_with_runrelay_emulator(tmp_path: Path, wait_for: Any) -> None:
    require_emulator()
    db = tmp_path / "example.sqlite3"
    env = child_environment(EXAMPLE_DB=str(db))
    env.pop("PUBSUB_EMULATOR_HOST", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage("migrate", "--verbosity", "0", env=env)

    with Managed(MANAGE, "runrelay", "--emulator", env=env) as worker:
        line = worker.wait_for_line("manage.py runrelay: Pub/Sub emulator running at ", 120)
        host = line.rpartition("export PUBSUB_EMULATOR_HOST=")[2]
        worker.wait_for_line("manage.py runrelay: worker running")
        manage("shell", "-c", PUBLISH, env={**env, "PUBSUB_EMULATOR_HOST": host})

        def stored() -> list[tuple[int, str]]:
            with contextlib.closing(sqlite3.connect(db, timeout=20)) as connection:
                return connection.execute("SELECT number, email FROM orders_order").fetchall()

        assert wait_for(stored, timeout=30, what="the order row") == [(1, "ada@example.com")]
        code = worker.terminate()
    output = worker.output()
    assert code == 0, output
    assert "order 1 stored (from shell)" in output
    assert "stopping the Pub/Sub emulator" in output
