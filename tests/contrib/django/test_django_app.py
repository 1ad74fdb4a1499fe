"""The Django app's set-up: settings.RELAY becomes relay's process-wide app, the
database middleware and results store are put in by default, bad input is
refused with the fix, and ``import relay`` still does not import Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import relay
from relay import ConfigurationError

pytestmark = pytest.mark.usefixtures("django_project")


def test_ready_installed_the_process_wide_app_from_settings_relay() -> None:
    from relay.contrib.django.conf import DATABASE_RESULTS, DB_MIDDLEWARE

    app = relay.get_app()
    assert app.settings.gc_project_id == "relay-django-test"
    assert app.settings.results == DATABASE_RESULTS
    # Outermost, then the results store: its database write happens inside the
    # middleware's "after" hook, which closes the connection last.
    assert list(app.settings.middleware[:2]) == [DB_MIDDLEWARE, "relay.results.ResultsMiddleware"]
    names = [type(m).__name__ for m in app.middleware]
    assert names == ["DjangoDBMiddleware", "ResultsMiddleware", "LoggingMiddleware"]
    assert app._transport is None  # lazily: no Google client until the first publish


def test_environment_variables_still_apply_on_top_of_settings_relay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from relay.contrib.django.conf import relay_settings

    monkeypatch.setenv("RELAY_ACK_DEADLINE", "45")
    monkeypatch.setenv("RELAY_RESULTS", "none")
    settings = relay_settings()
    assert settings.ack_deadline == 45
    assert settings.results is None  # an explicit choice, not replaced by the default
    assert "relay.results.ResultsMiddleware" not in settings.middleware


def test_results_and_middleware_set_in_relay_are_kept() -> None:
    from django.test import override_settings

    from relay.contrib.django.conf import DB_MIDDLEWARE, relay_settings
    from relay.contrib.django.middleware import DjangoDBMiddleware

    mine = DjangoDBMiddleware()
    relay_dict = {"GC_PROJECT_ID": "p", "RESULTS": "memory", "MIDDLEWARE": [mine]}
    with override_settings(RELAY=relay_dict):
        settings = relay_settings()
    assert settings.results == "memory"
    assert list(settings.middleware) == ["relay.results.ResultsMiddleware", mine]
    with override_settings(RELAY={"GC_PROJECT_ID": "p"}, RELAY_CLOSE_DB_CONNECTIONS=False):
        assert DB_MIDDLEWARE not in relay_settings().middleware


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"RELAY": {"GC_PROJECT_ID": "p", "ACK_DEADLIN": 30}},
            "unknown setting 'ACK_DEADLIN' in settings mapping (did you mean ACK_DEADLINE?); "
            "known settings: ACK_DEADLINE, ADMIN_TIMEOUT",
        ),
        (
            {"RELAY": {"THREADS_PER_SUBSCRIPTION": 4}},
            "unknown setting 'THREADS_PER_SUBSCRIPTION' in settings mapping: relay replaces it "
            "with CONCURRENCY",
        ),
        (
            {"RELAY": [("GC_PROJECT_ID", "p")]},
            "settings.RELAY must be a dict of relay settings, got list; write RELAY = {",
        ),
        (
            {"RELAY_CLOSE_DB_CONNECTIONS": "no"},
            "RELAY_CLOSE_DB_CONNECTIONS must be True or False, got str 'no'; set "
            "RELAY_CLOSE_DB_CONNECTIONS = False to leave",
        ),
    ],
    ids=["unknown-key", "rele-key", "not-a-dict", "opt-out-not-bool"],
)
def test_bad_django_settings_are_refused_naming_the_value_and_the_fix(
    overrides: dict[str, object], expected: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from relay.contrib.django.apps import install

    previous = relay.get_app()
    with override_settings(**overrides), pytest.raises(ImproperlyConfigured) as raised:
        install()
    assert isinstance(raised.value, ConfigurationError)  # relay-cli's exit code 2
    assert expected in str(raised.value)
    if "RELAY" in overrides:
        assert "settings.RELAY" in str(raised.value)
    assert relay.get_app() is previous  # nothing half-installed


def test_a_bad_middleware_path_fails_at_start_up_naming_it() -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from relay.contrib.django.apps import install

    with (
        override_settings(RELAY={"MIDDLEWARE": ["shop.nowhere.Missing"]}),
        pytest.raises(ImproperlyConfigured) as raised,
    ):
        install()
    assert "MIDDLEWARE: cannot import module 'shop.nowhere'" in str(raised.value)
    assert "Fix it in settings.RELAY" in str(raised.value)


def test_import_relay_does_not_import_django() -> None:
    code = "import relay, sys; print(sorted(m for m in sys.modules if m.startswith('django')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[3],
    ).stdout
    assert out.strip() == "[]"
