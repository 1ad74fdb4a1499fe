"""``flask relay``: relay-cli's commands and options, run through Flask's CLI."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from relay.contrib.flask import Relay


@pytest.fixture
def app() -> Flask:
    app = Flask("shop")
    app.config["RELAY"] = {"TRANSPORT": "memory", "GC_PROJECT_ID": "shop", "SUB_PREFIX": "shop"}
    ext = Relay(app)

    @ext.sub("orders")
    def on_order(data: Any, **attrs: str) -> None: ...

    @ext.task
    def resize(photo_id: int) -> None: ...

    return app


def test_run_help_is_relays_own_without_settings_subs_or_root(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["relay", "run", "--help"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("usage: flask relay run [-h] [--log-level")
    for option in ("--emulator", "--emulator-port", "--health-port", "--provisioning",
                   "--log-format"):
        assert option in result.stdout
    for option in ("--settings", "--subs", "--root"):
        assert option not in result.stdout


def test_the_group_lists_the_four_commands(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["relay", "--help"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.split("Commands:")[1].splitlines()
    listed = [line.split()[0] for line in lines if line[:3].strip() and line.startswith("  ")]
    assert listed == ["plan", "publish", "run", "subs"]


def test_subs_lists_the_extensions_subscriptions(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["relay", "subs"])

    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [row[:2] for row in rows] == [["NAME", "TOPIC"], ["shop-orders", "orders"],
                                         ["shop-resize", "resize"]]


def test_plan_check_exits_3_when_pubsub_differs(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["relay", "plan", "--check"])

    assert result.exit_code == 3, result.output
    assert "+ subscription shop-orders" in result.stdout
    assert "flask relay: error: Pub/Sub differs from the code" in result.stderr


def test_publish_prints_the_message_id(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["relay", "publish", "orders", '{"id": 1}', "--attr", "source=cli"]
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.strip().isdigit()


@pytest.mark.parametrize(("args", "code", "message"), [
    (["publish", "orders", "{not json"], 2, "flask relay: error: DATA is not valid JSON"),
    (["run", "--settings", "x"], 2, "flask relay: error: unrecognized arguments: --settings x"),
    (["run", "--provisioning", "maybe"], 2, "argument --provisioning: invalid choice: 'maybe'"),
])
def test_usage_errors_exit_2_with_one_line(
    app: Flask, args: list[str], code: int, message: str,
) -> None:
    result = app.test_cli_runner().invoke(args=["relay", *args])

    assert result.exit_code == code, result.output
    assert message in result.stderr


def test_run_without_subscriptions_says_where_they_were_looked_for() -> None:
    app = Flask("empty")
    app.config["RELAY"] = {"TRANSPORT": "memory"}
    Relay(app)

    result = app.test_cli_runner().invoke(args=["relay", "run"])

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        "flask relay: error: no subscriptions found on the Relay extension of Flask app "
        "'empty' (declare them with ext.task, ext.sub or ext.bucket, or add them with "
        "ext.register)"
    )
