"""``relay-cli plan`` and ``run --provisioning verify`` against the emulator."""

from __future__ import annotations

import os
from typing import Any

import pytest

from relay.cli import EXIT_DIFFERS, EXIT_FAILURE, EXIT_OK, main

from .conftest import Project


@pytest.fixture
def on_emulator(
    project: Project, pubsub_emulator: Any, monkeypatch: pytest.MonkeyPatch, unique_name: Any
) -> tuple[Project, str]:
    monkeypatch.delenv("RELAY_TRANSPORT")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.address)
    monkeypatch.setenv("RELAY_GC_PROJECT_ID", "relay-tests")
    topic = unique_name("planned")
    project.write(
        "subs.py",
        f"""
        from relay import sub

        @sub(topic="{topic}", dead_letter_topic="{topic}-dead", ack_deadline=30)
        def handle(data, **attrs):
            pass
        """,
    )
    return project, topic


def test_plan_shows_what_is_missing_then_what_changed(
    on_emulator: tuple[Project, str], capsys: pytest.CaptureFixture[str]
) -> None:
    project, topic = on_emulator
    assert main(["plan", "--check"]) == EXIT_DIFFERS
    out, err = capsys.readouterr()
    assert f"+ topic {topic}\n" in out and f"+ topic {topic}-dead\n" in out
    assert f"+ subscription {topic}\n" in out
    assert f"dead_letter_topic: '{topic}-dead'" in out
    assert "Plan: 4 to create, 0 to update, 0 conflict(s), 0 unchanged." in out
    assert "Pub/Sub differs from the code (4 difference(s))" in err

    # verify mode refuses to start, naming everything missing, and creates nothing.
    assert main(["run", "--provisioning", "verify"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "PROVISIONING is 'verify'" in err and f"subscription {topic} does not exist" in err
    assert main(["plan", "--check"]) == EXIT_DIFFERS
    capsys.readouterr()

    # Provision it (the default mode), then change the code: plan shows the update.
    from relay import Settings, Worker
    from relay.discovery import discover

    settings = Settings.load()
    Worker(discover(".", [], settings=settings), settings=settings).setup()
    assert main(["plan", "--check", "--changes-only"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.strip() == "Plan: 0 to create, 0 to update, 0 conflict(s), 4 unchanged."

    # A fresh process, since this one has imported subs.py already.
    source = (project.root / "subs.py").read_text().replace("ack_deadline=30", "ack_deadline=45")
    project.write("subs.py", source)
    env = {"RELAY_TRANSPORT": "pubsub", "RELAY_GC_PROJECT_ID": "relay-tests",
           "PUBSUB_EMULATOR_HOST": os.environ["PUBSUB_EMULATOR_HOST"]}
    done = project.cli("plan", env=env)
    assert done.returncode == EXIT_OK, done.stderr  # without --check a difference is no failure
    assert f"~ subscription {topic}\n    ack_deadline: 30 -> 45" in done.stdout
    assert project.cli("plan", "--check", env=env).returncode == EXIT_DIFFERS


def test_plan_apply_provisions_once_and_then_plan_is_in_sync(
    on_emulator: tuple[Project, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, topic = on_emulator
    assert main(["plan", "--apply"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Plan: 4 to create, 0 to update, 0 conflict(s), 0 unchanged." in out
    assert "Applied the plan" in out and f"  created {topic}\n" in out

    assert main(["plan", "--check", "--changes-only"]) == EXIT_OK  # nothing left to do
    assert main(["plan", "--apply", "--changes-only"]) == EXIT_OK
    assert "Applied" not in capsys.readouterr().out  # in sync: nothing applied again
