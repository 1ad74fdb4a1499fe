"""Building the push app from settings: the one way Flask, Django and bare servers do it.

``from_settings()`` reads the ``PUSH_*`` settings (docs/settings.md) and returns
a ``PushHandler``:

* ``PUSH_AUTH="oidc"`` (the default): an ``OidcVerifier`` for
  ``PUSH_AUDIENCE`` and ``PUSH_SERVICE_ACCOUNT``, with certificates from
  ``PUSH_CERTS_URL``. Either one missing is a ``ConfigurationError`` now,
  naming the setting and the fix; verification is never dropped silently.
* ``PUSH_AUTH="off"``: ``Unverified``, which logs a WARNING as it is built.

The subscriptions are the ones given, or those ``relay-cli run`` finds by
default: every ``subs`` module under the current directory
(``relay.discovery``). The Flask extension passes its own, the Django app
those of its installed apps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from relay.errors import ConfigurationError
from relay.push.app import PushHandler
from relay.push.auth import GOOGLE_CERTS_URL, OidcVerifier, Unverified

if TYPE_CHECKING:
    from relay.app import App
    from relay.settings import Settings
    from relay.subscription import Subscription

logger = logging.getLogger("relay.push")

#: What the WARNING of ``PUSH_AUTH="off"`` says to do instead.
TURN_ON = (
    'in production set PUSH_AUTH="oidc" (the default) with PUSH_AUDIENCE and '
    "PUSH_SERVICE_ACCOUNT"
)


def verifier_from_settings(settings: Settings) -> OidcVerifier | Unverified:
    """The verifier the ``PUSH_*`` settings describe (see the module docstring)."""
    if settings.push_auth == "off":
        return Unverified(fix=TURN_ON)
    missing = [
        (key, what) for key, what, value in (
            ("PUSH_AUDIENCE", "the audience configured on the push subscription (without "
             "one, Pub/Sub uses the push endpoint's URL, e.g. "
             "'https://shop-xyz.a.run.app/_relay/push/')", settings.push_audience),
            ("PUSH_SERVICE_ACCOUNT", "the email of the service account the push "
             "subscription authenticates as, e.g. 'pusher@my-project.iam.gserviceaccount.com'",
             settings.push_service_account),
        ) if not value
    ]
    if missing:
        keys = " and ".join(key for key, _ in missing)
        fixes = "; ".join(f"{key}: {what}" for key, what in missing)
        raise ConfigurationError(
            f'PUSH_AUTH is "oidc" (the default) but {keys} {"is" if len(missing) == 1 else "are"} '
            f"not set, so push requests cannot be verified. Set {fixes} (in RELAY = {{...}} "
            f'or RELAY_{missing[0][0]}); or, for local development only, PUSH_AUTH="off"'
        )
    assert settings.push_audience and settings.push_service_account  # checked above
    if settings.push_certs_url != GOOGLE_CERTS_URL:
        logger.warning(
            "push tokens are checked against the certificates at %s (PUSH_CERTS_URL), not "
            "Google's: only tokens that set signs are accepted", settings.push_certs_url,
        )
    return OidcVerifier(
        audience=settings.push_audience,
        service_account_email=settings.push_service_account,
        certs_url=settings.push_certs_url,
    )


def _app_for(settings: Settings | None) -> App:
    """The process-wide app if it has ``settings`` (or none are given), else a new one."""
    from relay import app as process

    if settings is None:
        return process.get_app()
    current = process._app  # not get_app(): that would build one from the environment
    if current is not None and current.settings == settings:
        return current
    return process.App(settings)


def from_settings(
    settings: Settings | None = None,
    subscriptions: Iterable[Subscription] | None = None,
    *,
    app: App | None = None,
) -> PushHandler:
    """The push handler for ``settings`` and ``subscriptions``; serve it with
    ``asgi_app``/``wsgi_app``, the Flask extension's ``mount_push`` or the Django
    app's ``relay.contrib.django.push`` URLs.

    ``settings``: default, those of ``app``, else of the process-wide app
    (``relay.configure`` / ``RELAY_SETTINGS`` / ``RELAY_*``). ``app`` supplies
    the middleware chain and the transport dead letters go out on: default,
    the process-wide app when its settings are ``settings``, else a new
    ``App(settings)``. ``subscriptions``: default, the ``subs`` modules under
    the current directory, as ``relay-cli run`` finds them; none at all is a
    ``ConfigurationError``.

    Raises ``ConfigurationError`` for ``PUSH_AUTH="oidc"`` without
    ``PUSH_AUDIENCE`` or ``PUSH_SERVICE_ACCOUNT``; ``PUSH_AUTH="off"`` logs a
    WARNING.
    """
    if app is None:
        app = _app_for(settings)
    settings = settings if settings is not None else app.settings
    verifier = verifier_from_settings(settings)  # before discovery: the cheaper failure
    if subscriptions is None:
        from relay.discovery import discover

        found = discover(".", settings=settings)
        where = "in the subs modules under the current directory"
    else:
        found = list(subscriptions)
        where = "in the subscriptions given"
    if not found:
        raise ConfigurationError(
            f"no subscriptions found {where}: the push app would serve nothing; declare "
            "@sub handlers (or @task) in a subs.py module, or pass subscriptions=[...]"
        )
    handler = PushHandler(found, verifier=verifier, app=app)
    if isinstance(verifier, OidcVerifier):
        warn_refused(verifier, handler.subscriptions)
    return handler


def warn_refused(verifier: OidcVerifier, subscriptions: Iterable[Subscription]) -> None:
    """A WARNING for each served push subscription whose token ``verifier`` will refuse.

    Its declaration (``push_endpoint``, ``push_service_account``,
    ``push_audience``: Pub/Sub's audience default is the endpoint) names the
    token Pub/Sub sends. Not an error: a project may declare subscriptions that
    another service, with its own settings, serves.
    """
    for sub in subscriptions:
        endpoint = getattr(sub, "push_endpoint", "") or ""
        if not endpoint:
            continue  # a pull subscription: nothing declared to compare
        account = getattr(sub, "push_service_account", "") or ""
        audience = getattr(sub, "push_audience", "") or endpoint
        if not account:
            problem = ("declares no push_service_account, so Pub/Sub sends no token; every "
                       "request will be refused with 401")
        elif account != verifier.service_account_email:
            problem = (f"is pushed with tokens for {account!r} but PUSH_SERVICE_ACCOUNT is "
                       f"{verifier.service_account_email!r}; every request will be refused "
                       "with 403")
        elif audience != verifier.audience:
            problem = (f"is pushed with the audience {audience!r} but PUSH_AUDIENCE is "
                       f"{verifier.audience!r}; every request will be refused with 403")
        else:
            continue
        logger.warning("push subscription %s %s (unless another service serves it)",
                       sub.name, problem)


__all__ = ["TURN_ON", "from_settings", "verifier_from_settings", "warn_refused"]
