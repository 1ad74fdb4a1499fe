"""Reaching Cloud Storage: the ``gcs`` extra, the endpoint, and the client.

google-cloud-storage is imported here and only here, when a notification is
first checked or provisioned, never when a bucket subscription is declared or
its messages are handled. Without it, that first use raises
``ConfigurationError`` naming the ``relay-pubsub[gcs]`` extra.

Which Cloud Storage:

* ``STORAGE_EMULATOR_HOST`` set (the variable google-cloud-storage itself
  honours, ``http://127.0.0.1:9023`` or ``127.0.0.1:9023``): that endpoint,
  with anonymous credentials and the settings' project id.
* else, under the Pub/Sub emulator (``PUBSUB_EMULATOR_HOST``) or a transport
  other than ``pubsub``: none. There is no Cloud Storage there, so the
  notification step is skipped (an INFO line; ``?`` in ``relay-cli plan``).
* else Google's, with the credentials the Pub/Sub transport uses
  (``GC_CREDENTIALS_PATH``, ``GC_CREDENTIALS_JSON``, or Application Default
  Credentials).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from relay.errors import ConfigurationError
from relay.setting_values import PUBSUB_TRANSPORTS

if TYPE_CHECKING:
    from relay.settings import Settings

#: The variable that points google-cloud-storage (and relay) at another endpoint.
STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
#: What to install for this module.
EXTRA = "relay-pubsub[gcs]"
GOOGLE_ENDPOINT = "storage.googleapis.com"


def missing_extra(cause: ImportError) -> ConfigurationError:
    """The error for a missing google-cloud-storage, saying what to install."""
    return ConfigurationError(
        "bucket subscriptions need google-cloud-storage to manage notification "
        f"configurations, and it cannot be imported ({type(cause).__name__}: {cause}); "
        f"install relay with the gcs extra: pip install '{EXTRA}', or run with "
        "PROVISIONING='off' to make no Cloud Storage calls"
    )


def import_storage() -> Any:
    """``google.cloud.storage``, or ``missing_extra``'s error."""
    try:
        from google.cloud import storage
    except ImportError as exc:
        raise missing_extra(exc) from None
    return storage


def storage_endpoint() -> str | None:
    """``STORAGE_EMULATOR_HOST`` with a scheme (``http://`` if it has none), or None."""
    host = os.environ.get(STORAGE_EMULATOR_ENV, "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def unavailable(settings: Settings) -> str | None:
    """Why there is no Cloud Storage to provision notifications on, or None if there is."""
    if storage_endpoint():
        return None
    if settings.emulator_host:
        return (
            f"the Pub/Sub emulator ({settings.emulator_host}) has no Cloud Storage; set "
            f"{STORAGE_EMULATOR_ENV} to a Storage endpoint to provision notifications there"
        )
    if settings.transport not in PUBSUB_TRANSPORTS:
        return (
            f"the {settings.transport!r} transport has no Cloud Storage; set "
            f"{STORAGE_EMULATOR_ENV} to a Storage endpoint to provision notifications there"
        )
    return None


def where() -> str:
    """The Storage endpoint in use, for errors."""
    return storage_endpoint() or GOOGLE_ENDPOINT


@contextlib.contextmanager
def storage_client(settings: Settings, project: str) -> Iterator[Any]:
    """A ``google.cloud.storage.Client`` for the block (see the module docstring)."""
    storage = import_storage()
    endpoint = storage_endpoint()
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        client = storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    else:
        from google.auth import exceptions as auth_exceptions

        from relay.transports.pubsub.credentials import load_credentials

        credentials = load_credentials(settings)
        kwargs: dict[str, Any] = {"project": project}
        if credentials is not None:
            kwargs["credentials"] = credentials
        try:
            client = storage.Client(**kwargs)
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"no Google credentials were found for Cloud Storage ({exc}): set "
                "GC_CREDENTIALS_PATH to a service-account key file or GC_CREDENTIALS_JSON to "
                "its contents, or run 'gcloud auth application-default login'"
            ) from None
    try:
        yield client
    finally:
        close = getattr(client, "close", None)  # google-cloud-storage 3.x has it
        if close is not None:
            close()
