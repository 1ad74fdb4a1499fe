"""``include("relay.contrib.django.push")``: push requests through Django's test
client, on the test project (SQLite), reach the handler with relay.push's status
codes; CSRF does not stop them; ``settings.RELAY`` says how they are verified."""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator
from typing import Any

import pytest

from relay import ConfigurationError, sub
from tests.push.helpers import AUDIENCE, SERVICE_ACCOUNT, Signer, cert_server, envelope

pytestmark = pytest.mark.usefixtures("django_project")

SIGNER = Signer()
PROJECT = {"GC_PROJECT_ID": "relay-django-test", "TOPIC_PREFIX": "djt-", "TRANSPORT": "memory"}
#: A real project's request middleware: CSRF enforced, APPEND_SLASH.
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

got: list[tuple[Any, dict[str, Any]]] = []


@sub(topic="payments")
def payments(data: Any, **attrs: Any) -> None:
    got.append((data, attrs))
    if isinstance(data, dict) and data.get("fail"):
        raise RuntimeError("bank unreachable")


PAYMENTS = "projects/relay-django-test/subscriptions/djt-payments"


def urlconf(patterns: Any) -> types.ModuleType:
    """A ROOT_URLCONF: the project's urls.py with the push URLs at _relay/push/."""
    from django.urls import include, path

    module = types.ModuleType("urls")  # hashable, as Django's resolver cache needs
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("_relay/push/", patterns if isinstance(patterns, tuple) else include(patterns))
    ]
    return module


@pytest.fixture
def project(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Django settings for one test: ``project(RELAY={...}, urls=...)`` applies them."""
    from django.test import Client, override_settings

    stack: list[Any] = []

    def apply(relay: dict[str, Any], patterns: Any = None) -> Any:
        from relay.contrib.django import push

        settings = override_settings(RELAY={**PROJECT, **relay}, MIDDLEWARE=MIDDLEWARE)
        settings.enable()
        stack.append(settings)
        urls = urlconf(patterns if patterns is not None else push.urls([payments]))
        routes = override_settings(ROOT_URLCONF=urls)
        routes.enable()
        stack.append(routes)
        return Client(enforce_csrf_checks=True)

    got.clear()
    try:
        yield apply
    finally:
        for settings in reversed(stack):
            settings.disable()


def test_a_wrapped_push_reaches_the_handler_past_csrf_and_is_acked(
    project: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        client = project({"PUSH_AUTH": "off"})
    assert any("PUSH AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records)

    response = client.post("/_relay/push/", envelope({"id": 1}, subscription=PAYMENTS,
                           attributes={"kind": "card"}), content_type="application/json")

    assert (response.status_code, response.content) == (200, b"ack\n")
    assert got == [({"id": 1}, {"kind": "card"})]


def test_bad_body_failing_handler_unknown_subscription_and_get(project: Any) -> None:
    client = project({"PUSH_AUTH": "off"})

    bad = client.post("/_relay/push/", b"[1, 2]", content_type="application/json")
    assert bad.status_code == 400
    failing = client.post("/_relay/push/", envelope({"fail": 1}, subscription=PAYMENTS),
                          content_type="application/json")
    assert (failing.status_code, failing.content) == (503, b"nack\n")
    unknown = client.post("/_relay/push/", envelope({}, subscription="projects/p/subscriptions/x"),
                          content_type="application/json")
    assert unknown.status_code == 404
    assert client.get("/_relay/push/").status_code == 405
    assert got == [({"fail": 1}, {})]


def test_a_message_over_djangos_upload_limit_is_served(project: Any) -> None:
    client = project({"PUSH_AUTH": "off"})
    big = {"blob": "x" * (3 * 1024 * 1024)}  # over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)

    response = client.post("/_relay/push/", envelope(big, subscription=PAYMENTS),
                           content_type="application/json")

    assert response.status_code == 200 and got == [(big, {})]


def test_the_last_path_segment_names_the_subscription_of_an_unwrapped_push(project: Any) -> None:
    client = project({"PUSH_AUTH": "off"})
    response = client.post("/_relay/push/djt-payments", b'{"id": 4}',
                           content_type="application/octet-stream")
    assert response.status_code == 200 and got == [({"id": 4}, {})]


def test_with_verification_on_only_a_valid_token_runs_the_handler(project: Any) -> None:
    with cert_server({SIGNER.key_id: SIGNER.cert_pem}) as (url, hits):
        client = project({"PUSH_AUDIENCE": AUDIENCE, "PUSH_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
                          "PUSH_CERTS_URL": url})
        body = envelope({"id": 5}, subscription=PAYMENTS)

        def post(token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return int(client.post("/_relay/push/", body, content_type="application/json",
                                   headers=headers).status_code)

        assert post(None) == 401
        assert post("not-a-jwt") == 401
        assert post(SIGNER.token(exp=1, iat=0)) == 401  # expired
        assert post(SIGNER.token(email="intruder@evil.test")) == 403
        assert got == []
        assert post(SIGNER.token()) == 200
        assert hits[0] == 1  # the certificates were fetched once, then cached
    assert got == [({"id": 5}, {})]


def test_oidc_without_an_audience_stops_the_urlconf_with_improperly_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from relay.contrib.django import push

    relay_dict = {**PROJECT, "PUSH_SERVICE_ACCOUNT": SERVICE_ACCOUNT}
    with override_settings(RELAY=relay_dict), pytest.raises(ImproperlyConfigured) as caught:
        push.urls([payments])
    assert isinstance(caught.value, ConfigurationError)
    assert "PUSH_AUDIENCE is not set" in str(caught.value)
    assert "settings.RELAY" in str(caught.value)


def test_include_by_name_serves_the_projects_own_subscriptions_on_sqlite(
    orders: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one line a project writes, with its discovered subscriptions: the shop's
    ``store_order`` writes an ``Order`` row for a pushed message."""
    from django.test import Client, override_settings
    from django.urls import include, path

    from relay.contrib.django import push
    from relay.contrib.django.conf import relay_settings
    from tests.contrib.django.project.shop.subs import store_order

    monkeypatch.setattr(push, "_default", None)  # built once per process: build it here
    with override_settings(RELAY={**PROJECT, "PUSH_AUTH": "off"}):
        # The project's urls.py: include() builds the push URLs, from settings.RELAY.
        routes = types.ModuleType("urls")
        routes.urlpatterns = [  # type: ignore[attr-defined]
            path("_relay/push/", include("relay.contrib.django.push"))
        ]
    with override_settings(RELAY={**PROJECT, "PUSH_AUTH": "off"}, ROOT_URLCONF=routes):
        name = store_order.resolve(relay_settings()).name
        pushed = envelope({"number": 77}, subscription=f"projects/p/subscriptions/{name}")
        response = Client().post("/_relay/push/", pushed, content_type="application/json")
        served = {p.name for p in push._default or []}
    assert response.status_code == 200
    assert list(orders.objects.values_list("number", flat=True)) == [77]
    assert served == {"push"}

