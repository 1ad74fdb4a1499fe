"""Push delivery in a Django project: one line in ``urls.py``.

::

    urlpatterns = [
        ...,
        path("_relay/push/", include("relay.contrib.django.push")),
    ]

The URLs are built when the project's URLconf includes them (Django imports
it at start-up under ``runserver`` and ``check``, else on the first request):
``relay.push.from_settings`` on ``settings.RELAY`` (the ``PUSH_*`` keys, read by
``relay_settings()``) and the project's subscriptions (the ``subs`` and
``tasks`` modules of ``INSTALLED_APPS``, what ``runrelay`` consumes). So
``PUSH_AUTH="oidc"`` without ``PUSH_AUDIENCE`` or ``PUSH_SERVICE_ACCOUNT``
stops the project there with ``ImproperlyConfigured``, and ``PUSH_AUTH="off"``
logs a WARNING there.

``urls(subscriptions=None)`` builds another set (for other subscriptions, or a
test): ``path("push/", push.urls())``. The view is CSRF-exempt (Pub/Sub sends
no CSRF token: the OIDC token is the check), answers ``POST`` only, and hands
the request to the ``PushHandler``: the parsing, verification, routing and
pipeline are ``relay.push``'s. It reads the body itself, up to the push limit,
because Pub/Sub's messages (up to 10 MB) are bigger than Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` allows ``request.body`` by default. See
docs/push.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from relay.errors import ConfigurationError
from relay.push import PushHandler, from_settings
from relay.push.app import MAX_BODY
from relay.subscription import Subscription

#: The URL namespace: ``reverse("relay_push:push")``.
app_name = "relay_push"

_lock = threading.Lock()
_default: list[URLPattern] | None = None


def push_handler(subscriptions: Iterable[Subscription] | None = None) -> PushHandler:
    """``from_settings`` on the project's relay settings and subscriptions (or these)."""
    from relay.contrib.django.conf import FIX, RelaySettingsError, relay_settings
    from relay.contrib.django.discovery import WHERE, discover

    settings = relay_settings()
    served = list(discover(settings) if subscriptions is None else subscriptions)
    if not served:
        raise RelaySettingsError(
            f"relay push: no subscriptions found {WHERE}; declare @sub handlers (or tasks) "
            "in an installed app's subs.py, or pass subscriptions to urls()"
        )
    try:
        return from_settings(settings, served)
    except RelaySettingsError:
        raise
    except ConfigurationError as exc:
        raise RelaySettingsError(f"relay settings: {exc}. {FIX}") from exc


def view(handler: PushHandler) -> Any:
    """The Django view serving ``handler``: CSRF-exempt, ``POST`` only."""

    def push(request: HttpRequest, subscription: str = "") -> HttpResponse:
        headers = {key.lower(): value for key, value in request.headers.items()}
        body = request.read(MAX_BODY + 1)  # over the limit: the handler answers 413
        answer = handler.handle(headers, body, subscription=subscription)
        response = HttpResponse(answer.body, status=answer.status)
        for key, value in answer.headers:
            response[key] = value
        return response

    served: Any = csrf_exempt(require_POST(push))  # Django's decorators are untyped
    return served


def urls(
    subscriptions: Iterable[Subscription] | None = None,
) -> tuple[list[URLPattern], str, str]:
    """``(patterns, app_name, namespace)`` for ``path("...", urls())``, with a new handler."""
    served = view(push_handler(subscriptions))
    patterns = [
        path("", served, name="push"),
        path("<str:subscription>", served, name="push"),
    ]
    return patterns, app_name, app_name


def __getattr__(name: str) -> Any:
    """``urlpatterns``, built once per process, when ``include()`` first asks for it."""
    global _default
    if name != "urlpatterns":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if _default is None:
            _default = urls()[0]
        return _default


__all__ = ["app_name", "push_handler", "urls", "view"]
