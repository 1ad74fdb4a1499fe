"""The Django app config of relay (label ``relay``).

``ready()`` installs relay's process-wide app from ``settings.RELAY`` (and the
``RELAY_*`` environment variables), so ``relay.publish`` and ``@task``'s
``.delay()`` work anywhere in the project with no other set-up. It validates the
settings and builds the middleware chain, so a bad ``RELAY`` stops the project
at start-up with ``ImproperlyConfigured``; it opens nothing: Google's clients are
made on the first publish (safe before a pre-forking server forks), and the
database is not queried.
"""

from __future__ import annotations

from django.apps import AppConfig


class RelayConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    name = "relay.contrib.django"
    label = "relay"
    verbose_name = "relay (Google Cloud Pub/Sub)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        install()


def install() -> None:
    """Make relay's process-wide app the one ``settings.RELAY`` describes."""
    from relay.app import App, set_app
    from relay.contrib.django.conf import FIX, RelaySettingsError, relay_settings
    from relay.errors import ConfigurationError

    settings = relay_settings()
    try:
        app = App(settings)  # builds the middleware chain; no transport yet
    except RelaySettingsError:
        raise
    except ConfigurationError as exc:  # a MIDDLEWARE entry or the RESULTS backend
        raise RelaySettingsError(f"relay settings: {exc}. {FIX}") from exc
    previous = set_app(app)
    if previous is not None:
        previous.close()
