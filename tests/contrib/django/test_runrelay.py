"""``manage.py runrelay`` as a child process on the Pub/Sub emulator: it provisions
the project's subscriptions, serves the health probes, stores a published order
as a row in the shared SQLite file, and stops cleanly on SIGTERM; ``relayplan
--check`` then finds Pub/Sub in agreement with the code."""

from __future__ import annotations

import io
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from relay import App, Settings
from relay.emulator import Emulator
from tests.contrib.django.conftest import DB_VARIABLE, MANAGE, SETTINGS
from tests.contrib.django.processes import Managed, child_environment

READY = "manage.py runrelay: worker running; press Ctrl-C (or send SIGTERM) to stop"


@pytest.mark.emulator
@pytest.mark.timeout(180)
def test_runrelay_consumes_on_the_emulator_writes_rows_and_stops_on_sigterm(
    pubsub_emulator: Emulator, django_project: Path, orders: Any,
    monkeypatch: pytest.MonkeyPatch, wait_for: Any,
) -> None:
    prefix = f"djt-{uuid.uuid4().hex[:8]}-"  # the emulator is shared by the session
    env = child_environment(**{
        DB_VARIABLE: str(django_project), "DJANGO_SETTINGS_MODULE": SETTINGS,
        "RELAY_TOPIC_PREFIX": prefix,  # RELAY_* variables apply over settings.RELAY
    })
    with Managed(MANAGE, "runrelay", "--health-port", "0", env=env) as worker:
        probes = worker.wait_for_line("manage.py runrelay: health probes at http://")
        worker.wait_for_line(READY)
        readyz = probes.split(" and ")[1]
        with urllib.request.urlopen(readyz, timeout=5) as answer:
            assert answer.status == 200

        app = App(Settings.load({"GC_PROJECT_ID": "relay-django-test",
                                 "TOPIC_PREFIX": prefix}, environ={}))
        try:
            app.publisher.publish("shop-orders", {"number": 7}, blocking=True, timeout=30)
        finally:
            app.close()
        row = wait_for(lambda: orders.objects.filter(number=7).first(), timeout=30,
                       what="the order row written by runrelay's handler")
        assert row.handled_by.startswith("relay-handler")
        assert row.pid == worker.process.pid
        code = worker.terminate()
    assert code == 0, worker.output()
    assert "SIGTERM received: stopping gracefully" in worker.output()

    # What runrelay provisioned is what the code declares.
    from django.core.management import call_command

    monkeypatch.setenv("RELAY_TOPIC_PREFIX", prefix)
    out = io.StringIO()
    call_command("relayplan", "--check", stdout=out)
    assert f"= subscription {prefix}shop-orders" in out.getvalue()
    assert "0 to create, 0 to update, 0 conflict(s)" in out.getvalue()
