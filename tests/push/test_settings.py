"""The PUSH_* settings: declared, parsed from RELAY_*, checked; and ``from_settings``,
the one way the push app is built from them (verifier, subscriptions, app)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

import relay
from relay import ConfigurationError, Settings, sub
from relay.push import OidcVerifier, PushHandler, Unverified, from_settings, wsgi_app
from relay.push.auth import GOOGLE_CERTS_URL
from relay.setting_specs import SPECS
from tests.support.isolation import isolated_relay  # noqa: F401 (autouse)

from .helpers import AUDIENCE, SERVICE_ACCOUNT, Signer, call_wsgi, cert_server, envelope

SIGNER = Signer()


def settings(**values: Any) -> Settings:
    return Settings.load(environ={}, gc_project_id="relay-test", transport="memory", **values)


@sub(topic="orders")
def orders(data: Any, **attrs: Any) -> None:
    received.append(data)


received: list[Any] = []


# ------------------------------------------------------------------ settings
def test_the_defaults_verify_with_googles_certificates_and_nothing_else_set() -> None:
    s = Settings.load(environ={})
    assert (s.push_auth, s.push_audience, s.push_service_account) == ("oidc", None, None)
    assert s.push_certs_url == GOOGLE_CERTS_URL == SPECS["push_certs_url"].default


def test_the_environment_sets_each_push_setting() -> None:
    s = Settings.load(environ={
        "RELAY_PUSH_AUTH": "off", "RELAY_PUSH_AUDIENCE": AUDIENCE,
        "RELAY_PUSH_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "RELAY_PUSH_CERTS_URL": "http://127.0.0.1:8123/certs",
    })
    assert s.push_auth == "off" and s.push_audience == AUDIENCE
    assert s.push_service_account == SERVICE_ACCOUNT
    assert s.push_certs_url == "http://127.0.0.1:8123/certs"
    empty = Settings.load(environ={"RELAY_PUSH_AUDIENCE": "", "RELAY_PUSH_SERVICE_ACCOUNT": ""})
    assert empty.push_audience is None and empty.push_service_account is None


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("PUSH_AUTH", "none", "PUSH_AUTH: 'none'; expected one of 'oidc', 'off'"),
    ("PUSH_AUTH", False, "PUSH_AUTH: False; expected one of 'oidc', 'off'"),
    ("PUSH_SERVICE_ACCOUNT", "pusher", "PUSH_SERVICE_ACCOUNT: expected a service account's email"),
    ("PUSH_SERVICE_ACCOUNT", "a b@c", "PUSH_SERVICE_ACCOUNT: expected a service account's email"),
    ("PUSH_AUDIENCE", 42, "PUSH_AUDIENCE: expected a string, got 42"),
    ("PUSH_CERTS_URL", "http://certs.example.com/c", "PUSH_CERTS_URL: expected an https:// URL"),
    ("PUSH_CERTS_URL", "ftp://127.0.0.1/c", "PUSH_CERTS_URL: expected an https:// URL"),
])
def test_a_bad_push_setting_is_refused_naming_it(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load({key: value}, environ={})
    assert expected in str(caught.value)


def test_a_bad_push_setting_from_the_environment_names_the_variable_value() -> None:
    with pytest.raises(ConfigurationError, match="PUSH_AUTH: 'yes'; expected one of"):
        Settings.load(environ={"RELAY_PUSH_AUTH": "yes"})


# -------------------------------------------------------------- from_settings
def test_oidc_settings_build_an_oidc_verifier_with_them() -> None:
    handler = from_settings(settings(
        push_audience=AUDIENCE, push_service_account=SERVICE_ACCOUNT,
        push_certs_url="https://certs.example.test/v1",
    ), [orders])
    verifier = handler.verifier
    assert isinstance(verifier, OidcVerifier)
    assert verifier.audience == AUDIENCE
    assert verifier.service_account_email == SERVICE_ACCOUNT
    assert verifier.certs.url == "https://certs.example.test/v1"
    assert [s.name for s in handler.subscriptions] == ["orders"]


def test_the_verifier_built_from_settings_accepts_a_good_token_and_refuses_others() -> None:
    received.clear()
    with cert_server({SIGNER.key_id: SIGNER.cert_pem}) as (url, _):
        handler = from_settings(settings(
            push_audience=AUDIENCE, push_service_account=SERVICE_ACCOUNT, push_certs_url=url,
        ), [orders])
        app = wsgi_app(handler)
        body = envelope({"id": 1})
        good = {"Authorization": f"Bearer {SIGNER.token()}"}
        other = {"Authorization": f"Bearer {SIGNER.token(email='someone@else.test')}"}
        assert call_wsgi(app, body)[0] == 401
        assert call_wsgi(app, body, other)[0] == 403
        assert received == []  # nothing ran for a refused request
        assert call_wsgi(app, body, good)[0] == 200
    assert received == [{"id": 1}]


@pytest.mark.parametrize(("given", "missing"), [
    ({"push_service_account": SERVICE_ACCOUNT}, ["PUSH_AUDIENCE"]),
    ({"push_audience": AUDIENCE}, ["PUSH_SERVICE_ACCOUNT"]),
    ({}, ["PUSH_AUDIENCE", "PUSH_SERVICE_ACCOUNT"]),
])
def test_oidc_without_audience_or_account_fails_naming_the_setting_and_the_fix(
    given: dict[str, str], missing: list[str],
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_settings(settings(**given), [orders])
    text = str(caught.value)
    assert text.startswith('PUSH_AUTH is "oidc" (the default) but ' + " and ".join(missing))
    for key in missing:
        assert f"Set {key}" in text or f"; {key}:" in text
    assert f"RELAY_{missing[0]}" in text and 'PUSH_AUTH="off"' in text


def test_off_builds_unverified_and_logs_a_warning_saying_how_to_turn_it_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        handler = from_settings(settings(push_auth="off"), [orders])
    assert isinstance(handler.verifier, Unverified)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "PUSH AUTHENTICATION IS OFF" in warnings[0].getMessage()
    assert 'PUSH_AUTH="oidc"' in warnings[0].getMessage()


def test_oidc_logs_no_warning_with_googles_certificates_and_one_with_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    oidc = {"push_audience": AUDIENCE, "push_service_account": SERVICE_ACCOUNT}
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        from_settings(settings(**oidc), [orders])
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        from_settings(settings(**oidc, push_certs_url="http://localhost:1/certs"), [orders])
    assert ["PUSH_CERTS_URL" in r.getMessage() for r in caplog.records] == [True]


def test_the_process_wide_app_is_used_when_it_has_the_settings() -> None:
    app = relay.configure(settings(push_auth="off"))
    assert from_settings(subscriptions=[orders]).app is app
    assert from_settings(app.settings, [orders]).app is app
    other = from_settings(app.settings.replace(sub_prefix="elsewhere"), [orders])
    assert other.app is not app and other.app.settings.sub_prefix == "elsewhere"
    assert [s.name for s in other.subscriptions] == ["elsewhere-orders"]


def test_subscriptions_are_discovered_as_relay_cli_run_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = tmp_path / "pushshop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "subs.py").write_text(
        "from relay import sub\n\n@sub(topic='invoices')\ndef invoices(data, **attrs): ...\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        relay.configure(settings(push_auth="off"))
        handler = from_settings()
        assert [s.name for s in handler.subscriptions] == ["invoices"]
        bare = wsgi_app().handler  # the bare app, from the process-wide settings alike
        assert isinstance(bare, PushHandler)
        assert [s.name for s in bare.subscriptions] == ["invoices"]
    finally:
        for name in ("pushshop", "pushshop.subs"):
            monkeypatch.delitem(sys.modules, name, raising=False)


def test_no_subscriptions_is_an_error_not_an_app_that_answers_404(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="no subscriptions found in the subs modules"):
        from_settings(settings(push_auth="off"))
    with pytest.raises(ConfigurationError, match="no subscriptions found in the subscriptions"):
        from_settings(settings(push_auth="off"), [])


def test_a_served_push_subscription_whose_token_would_be_refused_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = "https://push.example.test/pubsub"

    @sub(topic="t-a", push_endpoint=endpoint, push_service_account=SERVICE_ACCOUNT,
         push_audience=AUDIENCE)
    def agrees(data: Any, **attrs: Any) -> None: ...

    @sub(topic="t-b", push_endpoint=endpoint, push_audience=AUDIENCE,
         push_service_account="other@p.iam.gserviceaccount.com")
    def other_account(data: Any, **attrs: Any) -> None: ...

    @sub(topic="t-c", push_endpoint=endpoint + "/c", push_service_account=SERVICE_ACCOUNT)
    def endpoint_audience(data: Any, **attrs: Any) -> None: ...

    @sub(topic="t-d", push_endpoint=endpoint)
    def no_token(data: Any, **attrs: Any) -> None: ...

    oidc = settings(push_audience=AUDIENCE, push_service_account=SERVICE_ACCOUNT)
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        from_settings(oidc, [agrees, other_account, endpoint_audience, no_token, orders])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("push subscription t-b is pushed with tokens for 'other@p.")
    assert "403" in lines[0]
    assert lines[1].startswith(f"push subscription t-c is pushed with the audience '{endpoint}/c'")
    assert lines[2].startswith("push subscription t-d declares no push_service_account")
    assert "401" in lines[2]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        from_settings(settings(push_auth="off"), [other_account])
    assert ["AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records] == [True]
