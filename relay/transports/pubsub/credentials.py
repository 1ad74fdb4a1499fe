"""Loading the service-account key the settings name, with google-auth.

``Settings`` already checked the key's shape when it was built (a JSON object
with the fields google-auth needs; for ``GC_CREDENTIALS_PATH``, a readable file
holding one). What is left for here: a file that changed or vanished since, and
a key google-auth refuses (a corrupted private key). Errors name the setting and
google-auth's reason, never the path or the key, and do not chain google-auth's
exception, whose text may quote the path.
"""

from __future__ import annotations

import json
from typing import Any

from google.auth import exceptions as auth_exceptions

from relay.errors import ConfigurationError
from relay.redaction import redact
from relay.settings import Settings

_TO_FIX = (
    "use the service-account key file as downloaded, or unset it to use Application Default "
    "Credentials"
)


def load_credentials(settings: Settings) -> Any:
    """The settings' service-account credentials; None: Application Default Credentials."""
    from google.oauth2 import service_account

    if settings.gc_credentials_path:
        try:
            return service_account.Credentials.from_service_account_file(
                settings.gc_credentials_path
            )
        except OSError as exc:  # not str(exc): it quotes the path
            reason = exc.strerror or type(exc).__name__
            raise ConfigurationError(
                f"GC_CREDENTIALS_PATH: cannot read the key file ({reason}); {_TO_FIX}"
            ) from None
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise ConfigurationError(
                f"GC_CREDENTIALS_PATH: not usable service-account credentials ({_reason(exc)}); "
                f"{_TO_FIX}"
            ) from None
    if settings.gc_credentials_json:
        try:
            return service_account.Credentials.from_service_account_info(
                json.loads(settings.gc_credentials_json)
            )
        except (ValueError, TypeError, auth_exceptions.GoogleAuthError) as exc:
            raise ConfigurationError(
                f"GC_CREDENTIALS_JSON: not usable service-account credentials ({_reason(exc)}); "
                f"{_TO_FIX}"
            ) from None
    return None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {redact(str(exc))}"
