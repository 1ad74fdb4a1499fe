"""``Relay.mount_push``: push requests through Flask's test client reach the handler,
inside the extension's pipeline, with the status codes of relay.push."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask, url_for

from relay import ConfigurationError, Subscription
from relay.contrib.flask import Relay
from relay.contrib.flask.extension import PUSH_EXTENSION
from relay.push import OidcVerifier, PushHandler, Unverified
from tests.push.helpers import AUDIENCE, SERVICE_ACCOUNT, Signer, cert_server, envelope

SIGNER = Signer()


def flask_app(**relay_settings: Any) -> Flask:
    app = Flask("shop")
    app.config["RELAY"] = {"GC_PROJECT_ID": "relay-test", "TRANSPORT": "memory",
                           **relay_settings}
    return app


class Shop:
    """A Relay extension with one subscription that records or raises."""

    def __init__(self) -> None:
        self.ext = Relay()
        self.got: list[tuple[Any, dict[str, Any], bool]] = []

        @self.ext.sub("orders")
        def orders(data: Any, **attrs: Any) -> None:
            from flask import current_app, has_app_context

            self.got.append((data, attrs, has_app_context() and current_app.name == "shop"))
            if isinstance(data, dict) and data.get("fail"):
                raise RuntimeError("payment service down")

        self.orders: Subscription = orders


ORDERS = "projects/relay-test/subscriptions/orders"


def test_one_line_serves_wrapped_pushes_through_the_extension(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shop = Shop()
    app = flask_app(PUSH_AUTH="off")
    shop.ext.init_app(app)
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        handler = shop.ext.mount_push(app)
    assert any("PUSH AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records)
    assert app.extensions[PUSH_EXTENSION] is handler and isinstance(handler.verifier, Unverified)
    client = app.test_client()

    # With and without the trailing slash: Pub/Sub does not follow a redirect.
    for path in ("/_relay/push", "/_relay/push/"):
        response = client.post(path, data=envelope({"id": 1}, attributes={"kind": "new"}),
                               content_type="application/json")
        assert (response.status_code, response.text) == (200, "ack\n")
    # The handler ran inside the extension's pipeline: its own app context.
    assert shop.got == [({"id": 1}, {"kind": "new"}, True)] * 2


def test_bad_body_failing_handler_unknown_subscription_and_wrong_method() -> None:
    shop = Shop()
    app = flask_app(PUSH_AUTH="off")
    shop.ext.init_app(app)
    shop.ext.mount_push(app, "/pubsub")
    client = app.test_client()

    bad = client.post("/pubsub", data=b"{not json", content_type="application/json")
    assert bad.status_code == 400 and "not JSON" in bad.text
    failing = client.post("/pubsub", data=envelope({"fail": True}))
    assert (failing.status_code, failing.text) == (503, "nack\n")
    unknown = client.post("/pubsub", data=envelope({}, subscription="projects/p/subscriptions/x"))
    assert unknown.status_code == 404
    assert client.get("/pubsub").status_code == 405
    assert [g[0] for g in shop.got] == [{"fail": True}]  # nothing else reached the handler


def test_a_path_below_the_prefix_names_the_subscription_of_an_unwrapped_push() -> None:
    shop = Shop()
    app = flask_app(PUSH_AUTH="off")
    shop.ext.init_app(app)
    shop.ext.mount_push(app)
    response = app.test_client().post(
        "/_relay/push/orders", data=b'{"id": 9}', headers={"x-goog-pubsub-message-id": "7"},
    )
    assert response.status_code == 200
    assert shop.got == [({"id": 9}, {}, True)]
    with app.test_request_context():
        assert url_for("relay_push.push") == "/_relay/push/"


def test_with_verification_on_an_unsigned_request_is_401_and_runs_nothing() -> None:
    shop = Shop()
    with cert_server({SIGNER.key_id: SIGNER.cert_pem}) as (url, _):
        app = flask_app(PUSH_AUDIENCE=AUDIENCE, PUSH_SERVICE_ACCOUNT=SERVICE_ACCOUNT,
                        PUSH_CERTS_URL=url)
        shop.ext.init_app(app)
        handler = shop.ext.mount_push(app)
        assert isinstance(handler.verifier, OidcVerifier)
        client = app.test_client()
        body = envelope({"id": 3})

        assert client.post("/_relay/push", data=body).status_code == 401
        forged = Signer(key_id=SIGNER.key_id).token()  # right key id, another key
        refused = client.post("/_relay/push", data=body,
                              headers={"Authorization": f"Bearer {forged}"})
        assert refused.status_code == 401
        other = SIGNER.token(aud="https://elsewhere.test/")
        assert client.post("/_relay/push", data=body,
                           headers={"Authorization": f"Bearer {other}"}).status_code == 403
        assert shop.got == []
        good = client.post("/_relay/push", data=body,
                           headers={"Authorization": f"Bearer {SIGNER.token()}"})
    assert good.status_code == 200 and shop.got == [({"id": 3}, {}, True)]


def test_oidc_without_an_audience_fails_when_mounting_with_the_fix() -> None:
    shop = Shop()
    app = flask_app(PUSH_SERVICE_ACCOUNT=SERVICE_ACCOUNT)
    shop.ext.init_app(app)
    with pytest.raises(ConfigurationError, match=r'PUSH_AUDIENCE is not set.*PUSH_AUTH="off"'):
        shop.ext.mount_push(app)
    assert PUSH_EXTENSION not in app.extensions
    assert not any(rule.endpoint.startswith("relay_push") for rule in app.url_map.iter_rules())


def test_mounting_twice_or_with_nothing_to_serve_is_refused() -> None:
    shop = Shop()
    app = flask_app(PUSH_AUTH="off")
    shop.ext.init_app(app)
    shop.ext.mount_push(app)
    with pytest.raises(ConfigurationError, match="already serves push requests"):
        shop.ext.mount_push(app, "/again")
    empty = Relay(flask_app(PUSH_AUTH="off"))
    with pytest.raises(ConfigurationError, match="has no subscriptions to serve"):
        empty.mount_push()


def test_each_app_of_one_extension_gets_a_handler_on_its_own_settings() -> None:
    shop = Shop()
    first, second = flask_app(PUSH_AUTH="off"), flask_app(PUSH_AUTH="off", SUB_PREFIX="eu")
    shop.ext.init_app(first)
    shop.ext.init_app(second)  # the process-wide app is now second's
    one: PushHandler = shop.ext.mount_push(first)
    two: PushHandler = shop.ext.mount_push(second)
    assert [s.name for s in one.subscriptions] == ["orders"]
    assert [s.name for s in two.subscriptions] == ["eu-orders"]
    sent = envelope({"id": 5}, subscription="projects/relay-test/subscriptions/eu-orders")
    assert second.test_client().post("/_relay/push", data=sent).status_code == 200
    assert first.test_client().post("/_relay/push", data=sent).status_code == 404
