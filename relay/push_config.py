"""A push subscription's declaration: endpoint, service account and audience.

``@sub(..., push_endpoint=..., push_service_account=..., push_audience=...)``
(and ``@task``) check them here when the decorator runs, so a URL Pub/Sub
would refuse fails at import, naming the value and the fix. Provisioning
(``relay.provisioning``) carries them to Pub/Sub; ``relay.push`` serves the
requests.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from relay.errors import ConfigurationError

#: Hosts an ``http://`` endpoint may name: local development and the emulator.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def check_push(
    owner: str,
    endpoint: str | None,
    service_account: str | None,
    audience: str | None,
    *,
    exactly_once: bool = False,
) -> tuple[str, str, str]:
    """``(endpoint, service_account, audience)`` as declared ("" where not given).

    Raises ``ConfigurationError`` naming ``owner`` (the handler), the value and
    the fix when Pub/Sub would refuse it or it cannot mean anything.
    """
    endpoint = _text(owner, "push_endpoint", endpoint)
    service_account = _text(owner, "push_service_account", service_account)
    audience = _text(owner, "push_audience", audience)
    if endpoint:
        _check_endpoint(owner, endpoint)
    elif service_account or audience:
        given = "push_service_account" if service_account else "push_audience"
        raise ConfigurationError(
            f"{owner}: {given} is set but push_endpoint is not; a service account and an "
            "audience only apply to a push subscription: add push_endpoint='https://...' or "
            f"drop {given}"
        )
    if service_account and not _EMAIL.fullmatch(service_account):
        raise ConfigurationError(
            f"{owner}: push_service_account={service_account!r} is not a service account's "
            "email; write it like 'pusher@my-project.iam.gserviceaccount.com'"
        )
    if audience and not service_account:
        raise ConfigurationError(
            f"{owner}: push_audience={audience!r} without push_service_account; Pub/Sub only "
            "sends a token (which carries the audience) for an authenticated push: add "
            "push_service_account='...@....iam.gserviceaccount.com' or drop push_audience"
        )
    if endpoint and exactly_once:
        raise ConfigurationError(
            f"{owner}: enable_exactly_once_delivery=True with push_endpoint={endpoint!r}; "
            "Pub/Sub supports exactly-once delivery on pull subscriptions only: drop one of them"
        )
    return endpoint, service_account, audience


def default_audience(endpoint: str, service_account: str, audience: str) -> str:
    """The audience Pub/Sub puts in the push token: the declared one, or the endpoint
    URL (Pub/Sub's own default) for an authenticated push; "" without a service account."""
    if not service_account:
        return ""
    return audience or endpoint


def _text(owner: str, option: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigurationError(f"{owner}: {option} must be a string, got {value!r}")
    if value != value.strip():
        raise ConfigurationError(
            f"{owner}: {option}={value!r} has leading or trailing whitespace; remove it"
        )
    return value


def _check_endpoint(owner: str, endpoint: str) -> None:
    fix = (
        "Pub/Sub pushes to an https:// URL, e.g. push_endpoint='https://shop-xyz.a.run.app/"
        "pubsub' (http:// only for localhost, 127.0.0.1 or [::1]: local development and the "
        "emulator)"
    )
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigurationError(
            f"{owner}: push_endpoint={endpoint!r} is not a valid URL; {fix}"
        ) from None
    if any(c.isspace() for c in endpoint) or not host:
        raise ConfigurationError(f"{owner}: push_endpoint={endpoint!r} is not a URL; {fix}")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and host in LOOPBACK_HOSTS:
        return
    if parts.scheme == "http":
        raise ConfigurationError(
            f"{owner}: push_endpoint={endpoint!r} is http:// on host {host!r}; {fix}"
        )
    raise ConfigurationError(f"{owner}: push_endpoint={endpoint!r} is not an https:// URL; {fix}")


__all__ = ["LOOPBACK_HOSTS", "check_push", "default_audience"]
