"""relay's settings in a Django project: ``settings.RELAY``, then ``RELAY_*`` variables.

``relay_settings()`` is the one place the Django app turns Django settings into
a ``relay.Settings``; ``RelayConfig.ready()``, the management commands and the
tests all call it. On top of what ``Settings.from_object`` does it

* defaults ``RESULTS`` to the database store (``DATABASE_RESULTS``) when
  neither ``RELAY`` nor ``RELAY_RESULTS`` sets it: in a Django project every
  web process can read the database, while Django's default cache
  (``LocMemCache``) lives in one process and any cache may evict an outcome
  before it is read;
* puts ``DjangoDBMiddleware`` first in ``MIDDLEWARE`` (outermost: its
  ``post_*`` hooks run after everything else, the results store's database
  write included), followed by the ``ResultsMiddleware`` when ``RESULTS`` is
  set, unless the list names them already. ``RELAY_CLOSE_DB_CONNECTIONS =
  False`` (a Django setting beside ``RELAY``) leaves the middleware out.

The opt-out is a Django setting, not a ``RELAY`` key, because ``RELAY`` is
read by ``relay.Settings``, which knows no framework and rejects unknown keys.

Bad input raises ``RelaySettingsError``, both Django's ``ImproperlyConfigured``
(what a Django project expects at start-up) and relay's ``ConfigurationError``
(so ``manage.py runrelay`` exits 2 with one line, like ``relay-cli``), naming
the value and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from relay.errors import ConfigurationError
from relay.settings import Settings

#: Where task outcomes go in a Django project unless ``RELAY["RESULTS"]`` says otherwise.
DATABASE_RESULTS = "relay.contrib.django.results.DatabaseResults"
#: The middleware that closes stale database connections around each message.
DB_MIDDLEWARE = "relay.contrib.django.middleware.DjangoDBMiddleware"
#: The Django setting (beside ``RELAY``) that turns the middleware off.
CLOSE_CONNECTIONS_SETTING = "RELAY_CLOSE_DB_CONNECTIONS"
_RESULTS_MIDDLEWARE = "relay.results.ResultsMiddleware"
FIX = "Fix it in settings.RELAY (your Django settings) or the RELAY_* variable that sets it."


class RelaySettingsError(ConfigurationError, ImproperlyConfigured):  # type: ignore[misc]
    """relay's settings in a Django project are wrong; the message says how to fix them."""


def close_connections_enabled(django_settings: Any = None) -> bool:
    """``settings.RELAY_CLOSE_DB_CONNECTIONS`` (default True); anything but a bool is an error."""
    value = getattr(_django_settings(django_settings), CLOSE_CONNECTIONS_SETTING, True)
    if not isinstance(value, bool):
        raise RelaySettingsError(
            f"{CLOSE_CONNECTIONS_SETTING} must be True or False, got {type(value).__name__} "
            f"{value!r}; set {CLOSE_CONNECTIONS_SETTING} = False to leave relay's "
            "DjangoDBMiddleware out"
        )
    return value


def relay_settings(django_settings: Any = None, **overrides: Any) -> Settings:
    """relay's ``Settings`` from Django settings (``django.conf.settings`` by default).

    ``RELAY`` may be absent: then only ``RELAY_*`` variables apply, as for
    ``relay-cli`` without a settings module. ``overrides`` win over both.
    """
    source = _django_settings(django_settings)
    mapping = getattr(source, "RELAY", None)
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise RelaySettingsError(
            f"settings.RELAY must be a dict of relay settings, got {type(mapping).__name__}; "
            'write RELAY = {"GC_PROJECT_ID": "my-project", ...} (keys in docs/settings.md)'
        )
    close = close_connections_enabled(source)
    try:
        settings = Settings.load(mapping, **overrides)
        if "results" not in _given(mapping, overrides) and not _results_in_environ():
            settings = settings.replace(results=DATABASE_RESULTS)
        return settings.replace(middleware=_with_django_middleware(settings, close))
    except ConfigurationError as exc:
        raise RelaySettingsError(f"relay settings: {exc}. {FIX}") from exc


def _django_settings(django_settings: Any) -> Any:
    if django_settings is not None:
        return django_settings
    from django.conf import settings

    return settings


def _given(mapping: Mapping[str, Any], overrides: Mapping[str, Any]) -> set[str]:
    return {str(key).lower() for key in (*mapping, *overrides)}


def _results_in_environ() -> bool:
    import os

    return "RELAY_RESULTS" in os.environ


def _lists(middleware: list[Any], path: str) -> bool:
    """Whether ``middleware`` names ``path`` (or holds it, or a subclass, as a class or
    an instance); other dotted paths are not imported here."""
    for item in middleware:
        if isinstance(item, str):
            if item == path:
                return True
            continue
        cls = item if isinstance(item, type) else type(item)
        if any(f"{c.__module__}.{c.__qualname__}" == path for c in cls.__mro__):
            return True
    return False


def _with_django_middleware(settings: Settings, close: bool) -> list[Any]:
    listed = list(settings.middleware)
    head: list[Any] = []
    if close and not _lists(listed, DB_MIDDLEWARE):
        head.append(DB_MIDDLEWARE)
    if settings.results is not None and not _lists(listed, _RESULTS_MIDDLEWARE):
        # Listed here rather than added in front by the chain, so that it runs
        # inside the database middleware: its store() is a database write.
        head.append(_RESULTS_MIDDLEWARE)
    return [*head, *settings.middleware]


__all__ = [
    "CLOSE_CONNECTIONS_SETTING", "DATABASE_RESULTS", "DB_MIDDLEWARE", "FIX",
    "RelaySettingsError", "close_connections_enabled", "relay_settings",
]
