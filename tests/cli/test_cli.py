"""relay-cli commands, in process, on the memory transport."""

from __future__ import annotations

import sys

import pytest

from relay.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, main
from relay.errors import ConfigurationError
from tests.cli.conftest import Project

SUBS = """
import logging
from relay import sub

def is_landscape(**attrs):
    return attrs.get("orientation") == "landscape"

@sub(topic="orders")
def on_order(data, **attrs):
    pass

@sub(topic="photos", suffix="pano", filter_by=is_landscape,
     backend_filter_by='attributes.kind = "photo"')
async def on_photo(data, **attrs):
    pass
"""


def test_subs_lists_names_topics_filters_handlers_and_modes(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("app/subs.py", SUBS)
    project.write("conf.py", "RELAY = {'SUB_PREFIX': 'shop', 'TOPIC_PREFIX': 'dev-'}\n")

    code = main(["subs", "--settings", "conf"])

    out = capsys.readouterr().out.splitlines()
    assert code == EXIT_OK
    assert out[0].split() == ["NAME", "TOPIC", "FILTERS", "HANDLER", "MODE"]
    assert out[1].split() == ["shop-dev-orders", "dev-orders", "-", "app.subs.on_order", "sync"]
    assert out[2].split() == [
        "shop-dev-photos-pano", "dev-photos", "is_landscape,", "backend:",
        "attributes.kind", "=", '"photo"', "app.subs.on_photo", "async",
    ]


def test_subs_reads_the_settings_module_from_the_environment(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("subs.py", SUBS)
    project.write("conf.py", "RELAY = {'SUB_PREFIX': 'fromenv'}\n")
    monkeypatch.setenv("RELAY_SETTINGS", "conf")

    assert main(["subs"]) == EXIT_OK
    assert "fromenv-orders" in capsys.readouterr().out


def test_explicit_subs_modules(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.write("handlers/orders.py", SUBS)

    assert main(["subs", "--subs", "handlers.orders"]) == EXIT_OK
    assert "handlers.orders.on_order" in capsys.readouterr().out


def test_duplicate_names_exit_2_naming_both_handlers(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("a/subs.py", "from relay import sub\n@sub(topic='tasks')\ndef one(d, **k): ...\n")
    project.write("b/subs.py", "from relay import sub\n@sub(topic='tasks')\ndef two(d, **k): ...\n")

    for command in ("subs", "run"):
        code = main([command])
        err = capsys.readouterr().err
        assert code == EXIT_CONFIG
        assert "a.subs.one" in err
        assert "b.subs.two" in err
        assert "Traceback" not in err


def test_unknown_setting_exits_2_naming_it(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("subs.py", SUBS)
    project.write("conf.py", "RELAY = {'THREADS_PER_SUBSCRIPTION': 4, 'SUB_PREFX': 'x'}\n")

    code = main(["run", "--settings", "conf"])

    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "THREADS_PER_SUBSCRIPTION" in err and "'SUB_PREFX'" in err  # both, in one run
    assert err.count("error:") == 1 and "Traceback" not in err  # one error, a line a problem


def test_unknown_environment_variable_exits_2(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("subs.py", SUBS)
    monkeypatch.setenv("RELAY_CONCURENCY", "4")

    assert main(["subs"]) == EXIT_CONFIG
    assert "RELAY_CONCURENCY" in capsys.readouterr().err


def test_a_settings_module_that_fails_to_import_exits_2(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("conf.py", "RELAY = {'SUB_PREFIX': missing}\n")

    assert main(["subs", "--settings", "conf"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "settings module 'conf'" in err
    assert "conf.py:1" in err


def test_a_subs_module_that_fails_to_import_exits_2_naming_the_file(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("shop/subs.py", "import no_such_dependency\n")

    assert main(["run"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "shop/subs.py:1" in err
    assert "No module named 'no_such_dependency'" in err


def test_run_without_subscriptions_exits_2(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run"]) == EXIT_CONFIG
    assert "no subscriptions found" in capsys.readouterr().err


@pytest.mark.parametrize("transport", ["grpc", "pubsub"])
def test_run_without_a_project_id_exits_2(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> None:
    project.write("subs.py", SUBS)
    monkeypatch.setenv("RELAY_TRANSPORT", transport)
    for var in ("GCLOUD_PROJECT", "PUBSUB_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)

    assert main(["run"]) == EXIT_CONFIG
    assert "GC_PROJECT_ID is not set" in capsys.readouterr().err


BROKEN_TRANSPORT = """
from relay import TransportError
from relay.transports.memory import MemoryTransport

class Unreachable(MemoryTransport):
    def __init__(self, settings):
        super().__init__()

    def ensure_topic(self, topic):
        raise TransportError(f"cannot reach the broker to create {topic}")
"""


def test_a_provisioning_failure_exits_1(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("subs.py", SUBS)
    project.write("broken.py", BROKEN_TRANSPORT)
    monkeypatch.setenv("RELAY_TRANSPORT", "broken.Unreachable")

    assert main(["run"]) == EXIT_FAILURE
    assert "cannot reach the broker to create orders" in capsys.readouterr().err


RECORDING_SETTINGS = """
from relay import BaseMiddleware

SENT = []

class Record(BaseMiddleware):
    def post_publish_success(self, message, elapsed):
        SENT.append(message)

RELAY = {"TOPIC_PREFIX": "dev-", "MIDDLEWARE": [Record()]}
"""


def test_publish_prints_the_message_id(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("conf.py", RECORDING_SETTINGS)

    code = main([
        "publish", "orders", '{"id": 1}', "--attr", "kind=new", "--attr", "note=a=b",
        "--ordering-key", "customer-7", "--settings", "conf",
    ])

    assert code == EXIT_OK
    [message] = sys.modules["conf"].SENT
    assert capsys.readouterr().out.strip() == message.message_id
    assert message.topic == "dev-orders"
    assert message.data == {"id": 1}
    assert message.attributes["kind"] == "new"
    assert message.attributes["note"] == "a=b"
    assert message.ordering_key == "customer-7"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["publish", "orders", "{id: 1}"], "DATA is not valid JSON"),
        (["publish", "orders", "hello"], "to send a string, quote it"),
        (["publish", "orders", "{}", "--attr", "novalue"], "expected KEY=VALUE"),
        (["publish", "Bad Topic!", "{}"], "Bad Topic!"),
        (["publish"], "the following arguments are required"),
        (["nonsense"], "invalid choice"),
        ([], "the following arguments are required"),
        (["run", "--emulator", "java"], "'java' is not an emulator relay knows: use relay"),
        (["emulator", "--kind", "java"], "'java' is not an emulator relay knows: use relay"),
    ],
)
def test_usage_errors_exit_2(
    project: Project, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(args) == EXIT_CONFIG
    assert expected in capsys.readouterr().err


def test_a_misspelt_relay_emulator_variable_exits_2_naming_it(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_EMULATOR", "gogle")
    assert main(["run", "--emulator"]) == EXIT_CONFIG
    assert "RELAY_EMULATOR='gogle' is not an emulator relay knows" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--help"], ["run", "--help"], ["publish", "--help"]):
        assert main(args) == EXIT_OK
    assert "--emulator" in capsys.readouterr().out


@pytest.mark.parametrize("transport", ["grpc", "pubsub"])
def test_on_an_emulator_a_missing_project_id_defaults_on_both_pubsub_transports(
    monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    from relay.commands import EMULATOR_PROJECT, _with_project
    from relay.settings import Settings

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    for var in ("GCLOUD_PROJECT", "PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    settings = _with_project(Settings.load(environ={}, transport=transport))
    assert settings.project_id() == EMULATOR_PROJECT

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
    with pytest.raises(ConfigurationError, match="GC_PROJECT_ID is not set"):
        _with_project(Settings.load(environ={}, transport=transport))
