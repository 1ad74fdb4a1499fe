"""Verifying the OIDC token Pub/Sub puts on each push request.

A push subscription with authentication sends ``Authorization: Bearer <JWT>``,
a Google-signed ID token for the subscription's service account.
``OidcVerifier`` checks, in this order, and before any handler runs:

* a bearer token is there and is a JWT signed by one of Google's keys, not
  expired (401 otherwise: "who are you?");
* its issuer is Google's, its audience the one configured on the
  subscription, its ``email`` the expected service account, and that email is
  verified (403 otherwise: "not you").

Google's signing certificates are fetched with the standard library (no HTTP
client dependency) from ``certs_url`` and cached for as long as the response's
``Cache-Control: max-age`` says (an hour if it says nothing); a token signed by
a key not in the cache triggers one refetch (Google rotates keys), at most
every ``REFETCH_AFTER`` seconds.

``Unverified()`` turns verification off. It is meant for local development
only, never a default: building one logs a WARNING saying so, loudly.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from google.auth import exceptions, jwt  # type: ignore[import-untyped,unused-ignore]

logger = logging.getLogger("relay.push.auth")

#: Google's OAuth2 certificates (PEM, by key id): what signs push ID tokens.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
DEFAULT_CACHE_SECONDS = 3600.0
#: A token with an unknown key id refetches the certificates at most this often.
REFETCH_AFTER = 30.0
_MAX_AGE = re.compile(r"max-age=(\d+)")
_jwt: Any = jwt
_exceptions: Any = exceptions
_GoogleAuthError: type[Exception] = _exceptions.GoogleAuthError
#: google.auth.jwt is untyped: typed handles on the two calls made.
_decode_header: Callable[[str], dict[str, Any]] = _jwt.decode_header
_decode: Callable[..., dict[str, Any]] = _jwt.decode


class PushAuthError(Exception):
    """A push request refused: ``status`` is 401 or 403; ``reason`` is logged, not sent."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CertificateCache:
    """Google's certificates by key id, fetched from ``url`` and kept until they expire."""

    def __init__(self, url: str = GOOGLE_CERTS_URL, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched = float("-inf")
        self._lock = threading.Lock()
        #: How many times the certificates were fetched (tests read it).
        self.fetches = 0

    def fresh(self) -> bool:
        return bool(self._certs) and time.monotonic() < self._expires

    def get(self, key_id: str | None = None) -> Mapping[str, str]:
        """The certificates, fetched if stale or if ``key_id`` is unknown (rate-limited)."""
        with self._lock:
            now = time.monotonic()
            stale = not self._certs or now >= self._expires
            unknown = key_id is not None and key_id not in self._certs
            if stale or (unknown and now - self._fetched >= REFETCH_AFTER):
                self._fetch(now)
            return dict(self._certs)

    def _fetch(self, now: float) -> None:
        self._fetched = now
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                body = response.read()
                cache_control = response.headers.get("Cache-Control", "") or ""
            certs = json.loads(body)
        except Exception as exc:
            if self._certs:  # keep serving the ones we have
                logger.warning("could not refresh the certificates from %s: %s", self.url, exc)
                return
            raise PushAuthError(
                401, f"could not fetch the token-signing certificates from {self.url}: {exc}"
            ) from exc
        if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
            raise PushAuthError(401, f"{self.url} did not return a certificate set")
        match = _MAX_AGE.search(cache_control)
        age = float(match.group(1)) if match else DEFAULT_CACHE_SECONDS
        self._certs = certs
        self._expires = now + age
        self.fetches += 1


class OidcVerifier:
    """Checks a push request's ``Authorization`` header; see the module docstring."""

    enabled = True

    def __init__(
        self,
        *,
        audience: str,
        service_account_email: str,
        certs_url: str = GOOGLE_CERTS_URL,
        issuers: tuple[str, ...] = GOOGLE_ISSUERS,
        clock_skew: int = 10,
    ) -> None:
        if not audience or not service_account_email:
            raise ValueError(
                "OidcVerifier needs the audience configured on the push subscription and the "
                "service account email Pub/Sub signs as"
            )
        self.audience = audience
        self.service_account_email = service_account_email
        self.issuers = issuers
        self.clock_skew = clock_skew
        self.certs = CertificateCache(certs_url)

    def ready(self) -> bool:
        """True if verifying needs no network call (certificates cached and fresh)."""
        return self.certs.fresh()

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or ``PushAuthError`` (401/403)."""
        if not authorization:
            raise PushAuthError(401, "no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise PushAuthError(401, "the Authorization header is not 'Bearer <token>'")
        try:
            header = _decode_header(token)
        except (ValueError, _GoogleAuthError) as exc:
            raise PushAuthError(401, f"the bearer token is not a JWT ({exc})") from None
        if header.get("alg") != "RS256":
            raise PushAuthError(401, f"the token's algorithm is {header.get('alg')!r}, not RS256")
        key_id = header.get("kid")
        certs = self.certs.get(key_id if isinstance(key_id, str) else None)
        try:
            # Signature and time checks; the audience is checked below, as a 403.
            claims = _decode(
                token, certs=certs, verify=True, audience=None,
                clock_skew_in_seconds=self.clock_skew,
            )
        except (ValueError, _GoogleAuthError) as exc:
            raise PushAuthError(401, f"the token is not valid ({exc})") from None
        if claims.get("iss") not in self.issuers:
            raise PushAuthError(403, f"the token's issuer {claims.get('iss')!r} is not Google")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise PushAuthError(
                403, f"the token's audience {audience!r} is not {self.audience!r}"
            )
        if claims.get("email") != self.service_account_email:
            raise PushAuthError(
                403, f"the token is for {claims.get('email')!r}, not the expected "
                f"service account {self.service_account_email!r}",
            )
        if claims.get("email_verified") is not True:
            raise PushAuthError(403, "the token's email is not verified")
        return claims


class Unverified:
    """No verification at all: local development only. Logged loudly when built."""

    enabled = False

    #: How to turn verification on, as the WARNING says it.
    FIX = "in production pass OidcVerifier(audience=..., service_account_email=...)"

    def __init__(self, *, fix: str = FIX) -> None:
        logger.warning(
            "PUSH AUTHENTICATION IS OFF: push requests are accepted WITHOUT verifying their "
            "OIDC token, so anyone who can reach this endpoint can run your handlers. Use "
            "this for local development only; %s.", fix,
        )

    def ready(self) -> bool:
        return True

    def verify(self, authorization: str | None) -> dict[str, Any]:
        return {}


Verifier = OidcVerifier | Unverified
