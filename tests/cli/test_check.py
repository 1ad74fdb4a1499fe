"""relay-cli check, and the Relé names run/subs/publish meet (issue #14)."""

from __future__ import annotations

import sys

import pytest

from relay.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, main
from tests.cli.conftest import Project

CLEAN_SUBS = """
from relay import sub

@sub(topic="orders")
def on_order(data, **attrs):
    pass
"""

# A Relé app half-way through a migration: every kind of trap at once.
RELE_SETTINGS = """
RELAY = {
    "THREADS_PER_SUBSCRIPTION": 2,
    "GC_STORAGE_REGION": "europe-west1",
    "MIDDLEWARE": [
        "rele.contrib.LoggingMiddleware",
        "rele.contrib.unrecoverable_middleware.UnrecoverableMiddleWare",
        "mw.Timing",
    ],
}
"""

RELE_MIDDLEWARE = """
from relay import BaseMiddleware

class Timing(BaseMiddleware):
    def post_process_message_success(self, subscription, start_time, message):
        pass
"""

RELE_SUBS = """
from relay import sub
from rele.contrib.unrecoverable_middleware import UnrecoverableException

@sub(topic="orders")
def on_order(data, **kwargs):
    raise UnrecoverableException("gone")
"""


def test_check_exits_0_when_clean(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.write("subs.py", CLEAN_SUBS)
    project.write("conf.py", "RELAY = {'SUB_PREFIX': 'shop'}\n")

    code = main(["check", "--settings", "conf"])

    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert "settings: ok" in out
    assert "middleware: ok (1 entries)" in out
    assert "subscriptions: ok (1 found)" in out
    assert out.strip().endswith("relay-cli check: no problems found")


def test_check_reports_every_problem_at_once_with_relay_replacements(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a machine without Relé (the bench dependency group installs it).
    for name in [n for n in sys.modules if n == "rele" or n.startswith("rele.")] + ["rele"]:
        monkeypatch.setitem(sys.modules, name, None)
    project.write("conf.py", RELE_SETTINGS)
    project.write("mw.py", RELE_MIDDLEWARE)
    project.write("app/subs.py", RELE_SUBS)

    code = main(["check", "--settings", "conf"])

    out = capsys.readouterr().out
    assert code == EXIT_FAILURE, out
    # settings keys Relé uses that relay names differently
    assert "THREADS_PER_SUBSCRIPTION" in out and "CONCURRENCY" in out
    # middleware paths, checked although the settings did not load
    assert "'rele.contrib.LoggingMiddleware' is Relé's" in out
    assert "relay.contrib.logging_middleware.LoggingMiddleware" in out
    assert "UnrecoverableMiddleWare' is Relé's" in out
    assert "mw.Timing.post_process_message_success(self, subscription, start_time, message)" in out
    # a subs module that cannot import, and the Relé exception it uses
    assert "cannot import subs module 'app.subs'" in out
    assert "app/subs.py:3: Relé's" in out
    assert "UnrecoverableException: use relay.UnrecoverableError" in out
    assert "relay-cli check: " in out and "problems found" in out


def test_check_finds_a_rele_settings_dict_and_still_checks_its_keys(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("subs.py", CLEAN_SUBS)
    project.write("conf.py", "RELE = {'APP_NAME': 'shop'}\n")

    assert main(["check", "--settings", "conf"]) == EXIT_FAILURE
    out = capsys.readouterr().out
    assert "defines RELE, Relé's name for the settings: rename it RELAY" in out
    assert "APP_NAME" in out and "SUB_PREFIX" in out


def test_check_reports_duplicates_and_missing_subscriptions(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("a/subs.py", CLEAN_SUBS)
    project.write("b/subs.py", CLEAN_SUBS)

    assert main(["check"]) == EXIT_FAILURE
    assert "a.subs.on_order" in capsys.readouterr().out

    assert main(["check", "--root", "a/nothing-here"]) == EXIT_FAILURE
    assert "no subscriptions found" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["subs", "run"])
def test_subs_and_run_reject_a_rele_middleware_path_naming_the_replacement(
    project: Project, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    project.write("subs.py", CLEAN_SUBS)
    project.write("conf.py", "RELAY = {'MIDDLEWARE': ['rele.contrib.LoggingMiddleware']}\n")

    assert main([command, "--settings", "conf"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "'rele.contrib.LoggingMiddleware' is Relé's" in err
    assert "relay.contrib.logging_middleware.LoggingMiddleware" in err
    assert len(err.strip().splitlines()) == 1


THREE_PROBLEMS = """
RELAY = {
    "THREADS_PER_SUBSCRIPTION": 2,
    "GC_STORAGE_REGION": "europe-west1",
    "MIDDLEWARE": ["rele.contrib.LoggingMiddleware"],
}
"""


@pytest.mark.parametrize("command", ["subs", "run"])
def test_subs_and_run_report_settings_and_middleware_problems_in_one_run(
    project: Project, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    project.write("subs.py", CLEAN_SUBS)
    project.write("conf.py", THREE_PROBLEMS)

    assert main([command, "--settings", "conf"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("relay-cli: error: 3 problems in the settings and MIDDLEWARE:"), err
    assert "THREADS_PER_SUBSCRIPTION" in err and "CONCURRENCY" in err
    assert "GC_STORAGE_REGION'" in err and "GC_STORAGE_REGIONS" in err
    assert "'rele.contrib.LoggingMiddleware' is Relé's" in err
    assert "relay.contrib.logging_middleware.LoggingMiddleware" in err
    assert "`relay-cli check` for the full report" in err


def test_subs_shows_the_global_filter(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("subs.py", CLEAN_SUBS)
    project.write(
        "conf.py",
        "def only_prod(**attrs):\n    return attrs.get('env') == 'prod'\n\n"
        "RELAY = {'FILTER_SUBS_BY': [only_prod]}\n",
    )

    assert main(["subs", "--settings", "conf"]) == EXIT_OK
    row = capsys.readouterr().out.splitlines()[1]
    assert "global: only_prod" in row


FAILING_TRANSPORT = """
from relay.errors import TransportError
from relay.transports.memory import MemoryTransport

class Refusing(MemoryTransport):
    def __init__(self, settings):
        super().__init__()
        self.fail_publishes = TransportError("the broker refused it")
"""


def test_a_failed_publish_prints_one_line(project: Project) -> None:
    project.write("refusing.py", FAILING_TRANSPORT)

    done = project.cli(
        "publish", "orders", '{"card": "4111"}', env={"RELAY_TRANSPORT": "refusing.Refusing"}
    )

    assert done.returncode == EXIT_FAILURE
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("relay-cli: error: publishing to topic 'orders' failed")
    assert "the broker refused it" in line
    assert "4111" not in line
