"""OIDC verification of push requests: a local key, a locally served certificate
set and signed tokens. Nothing runs for a rejected request."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relay import App, MiddlewareChain, Settings, sub
from relay.push import OidcVerifier, PushAuthError, PushHandler, Unverified, asgi_app, wsgi_app
from relay.push.auth import CertificateCache
from relay.transports.memory import MemoryTransport

from .helpers import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    Hooks,
    Signer,
    call_asgi,
    call_wsgi,
    cert_server,
    envelope,
)

SIGNER = Signer()


@pytest.fixture
def certs_url() -> Iterator[tuple[str, list[int]]]:
    with cert_server({SIGNER.key_id: SIGNER.cert_pem}) as served:
        yield served


def verifier(url: str) -> OidcVerifier:
    return OidcVerifier(audience=AUDIENCE, service_account_email=SERVICE_ACCOUNT, certs_url=url)


def test_a_valid_token_passes_and_returns_its_claims(certs_url: tuple[str, list[int]]) -> None:
    claims = verifier(certs_url[0]).verify(f"Bearer {SIGNER.token()}")
    assert claims["email"] == SERVICE_ACCOUNT


@pytest.mark.parametrize(
    ("authorization", "status", "says"),
    [
        (None, 401, "no Authorization"),
        ("Basic abc", 401, "Bearer"),
        ("Bearer garbage", 401, "not a JWT"),
        ("Bearer " + SIGNER.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
         401, "not valid"),
        ("Bearer " + Signer("test-key").token(), 401, "not valid"),  # same kid, other key
        ("Bearer " + SIGNER.token(aud="https://elsewhere.test"), 403, "audience"),
        ("Bearer " + SIGNER.token(iss="https://evil.test"), 403, "issuer"),
        ("Bearer " + SIGNER.token(email="someone@else.test"), 403, "service account"),
        ("Bearer " + SIGNER.token(email_verified=False), 403, "not verified"),
    ],
    ids=["missing", "not-bearer", "garbage", "expired", "bad-signature", "wrong-audience",
         "wrong-issuer", "wrong-email", "unverified-email"],
)
def test_bad_tokens_are_refused(
    certs_url: tuple[str, list[int]], authorization: str | None, status: int, says: str
) -> None:
    with pytest.raises(PushAuthError) as caught:
        verifier(certs_url[0]).verify(authorization)
    assert caught.value.status == status
    assert says in caught.value.reason


def test_an_unsigned_token_is_refused(certs_url: tuple[str, list[int]]) -> None:
    import base64
    import json

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    token = ".".join([part({"alg": "none", "typ": "JWT"}), part({"aud": AUDIENCE}), ""])
    with pytest.raises(PushAuthError) as caught:
        verifier(certs_url[0]).verify(f"Bearer {token}")
    assert caught.value.status == 401


def test_certificates_are_fetched_once_and_cached(certs_url: tuple[str, list[int]]) -> None:
    url, hits = certs_url
    check = verifier(url)
    assert not check.ready()
    for _ in range(3):
        check.verify(f"Bearer {SIGNER.token()}")
    assert hits[0] == 1 and check.certs.fetches == 1
    assert check.ready()


def test_an_unknown_key_id_refetches_rate_limited(
    certs_url: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, hits = certs_url
    check = verifier(url)
    check.verify(f"Bearer {SIGNER.token()}")
    rotated = Signer("rotated").token()
    with pytest.raises(PushAuthError):  # within REFETCH_AFTER of the last fetch: no refetch
        check.verify(f"Bearer {rotated}")
    assert hits[0] == 1
    monkeypatch.setattr("relay.push.auth.REFETCH_AFTER", 0.0)
    with pytest.raises(PushAuthError):  # Google rotated its keys: fetched again
        check.verify(f"Bearer {rotated}")
    assert hits[0] == 2


def test_unreachable_certificates_refuse_with_401() -> None:
    cache = CertificateCache("http://127.0.0.1:9/certs", timeout=2)
    check = verifier(cache.url)
    with pytest.raises(PushAuthError) as caught:
        check.verify(f"Bearer {SIGNER.token()}")
    assert caught.value.status == 401


def test_verification_off_is_explicit_and_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.push.auth"):
        Unverified()
    assert any("AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records)


def test_oidc_verifier_needs_audience_and_email() -> None:
    with pytest.raises(ValueError, match="audience"):
        OidcVerifier(audience="", service_account_email=SERVICE_ACCOUNT)


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_through_the_apps_nothing_runs_for_a_rejected_request(
    certs_url: tuple[str, list[int]], server: str
) -> None:
    ran: list[Any] = []

    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        ran.append(data)

    hooks = Hooks()
    conf = Settings.load(environ={}, gc_project_id="relay-test", transport="memory")
    app = App(conf, transport=MemoryTransport(), middleware=MiddlewareChain([hooks]))
    handler = PushHandler([orders], verifier=verifier(certs_url[0]), app=app)

    def call(body: bytes, headers: dict[str, str]) -> int:
        if server == "wsgi":
            return call_wsgi(wsgi_app(handler), body, headers=headers)[0]
        return call_asgi(asgi_app(handler), body, headers=headers)[0]

    assert call(envelope(1), {}) == 401
    assert call(b"not even json", {"authorization": "Bearer x.y.z"}) == 401
    wrong = SIGNER.token(email="someone@else.test")
    assert call(envelope(2), {"authorization": f"Bearer {wrong}"}) == 403
    assert ran == [] and hooks.seen == []
    assert call(envelope(3), {"authorization": f"Bearer {SIGNER.token()}"}) == 200
    assert ran == [3]
    handler.close()
