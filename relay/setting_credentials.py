"""The two credentials settings: what they accept, and the key they must hold.

A setting whose name says credentials is never echoed: every error here says
the type or the shape of what was given and how to fix it, never the value
(not even a path: a key pasted there instead of a path would be printed).
``relay.setting_values`` calls ``coerce_credentials`` for each value loaded and
``check_credentials`` for every ``Settings`` built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from relay.errors import ConfigurationError
from relay.redaction import describe, holds_private_key, shown

if TYPE_CHECKING:
    from relay.settings import Settings

#: The credentials settings.
CREDENTIALS = ("gc_credentials_path", "gc_credentials_json")
#: The fields google-auth needs in a service-account key.
_KEY_FIELDS = ("client_email", "private_key", "token_uri")
#: Bigger than any key file (they are about 2.3 KB).
_MAX_KEY_FILE = 64 * 1024
_TO_FIX = "or unset it to use Application Default Credentials"


def coerce_credentials(name: str, value: Any) -> str | None:
    """GC_CREDENTIALS_PATH: a str or path-like; GC_CREDENTIALS_JSON: a str, or the
    dict ``json.load`` gives (stored as its JSON). The contents are checked by
    ``check_credentials``."""
    if value is None or value == "":
        return None
    if name == "gc_credentials_json":
        if isinstance(value, Mapping):
            try:
                return json.dumps(dict(value))
            except (TypeError, ValueError):
                raise ConfigurationError(
                    "GC_CREDENTIALS_JSON: the dict holds a value JSON cannot represent; pass "
                    "the key file's contents as json.load returns them"
                ) from None
        if not isinstance(value, str):
            hint = ": decode it first (value.decode())" if isinstance(value, bytes) else ""
            raise ConfigurationError(
                "GC_CREDENTIALS_JSON: expected the key file's contents as a JSON string (or "
                f"the dict json.load gives), got {describe(value)}{hint}"
            )
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if holds_private_key(value):
        raise ConfigurationError(
            f"GC_CREDENTIALS_PATH: expected the key file's path, got {describe(value)} holding "
            "a private key (not shown); pass the key itself as GC_CREDENTIALS_JSON"
        )
    if not isinstance(value, str):
        hint = ": decode it first (value.decode())" if isinstance(value, bytes) else (
            "; to pass the key itself, use GC_CREDENTIALS_JSON" if isinstance(value, Mapping)
            else "")
        raise ConfigurationError(
            "GC_CREDENTIALS_PATH: expected the key file's path (a str or pathlib.Path), got "
            f"{describe(value)}{hint}"
        )
    return value


def check_credentials(s: Settings) -> None:
    """Both credentials settings, whichever way the object was built.

    GC_CREDENTIALS_JSON must be a service-account key; GC_CREDENTIALS_PATH must
    name a readable file holding one, except when PUBSUB_EMULATOR_HOST is set:
    then credentials are never used, and a path that exists only in production
    does not stop a local run.
    """
    path, blob = s.gc_credentials_path, s.gc_credentials_json
    for name, value in (("gc_credentials_path", path), ("gc_credentials_json", blob)):
        coerce_credentials(name, value)  # the constructor path skips coerce
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(
                f"{name.upper()}: expected a str, got {describe(value)}; Settings.load "
                "also takes a dict or a pathlib.Path here"
            )
    if path and blob:
        raise ConfigurationError(
            "GC_CREDENTIALS_PATH and GC_CREDENTIALS_JSON are both set; keep one"
        )
    if blob:
        _check_key(blob, "GC_CREDENTIALS_JSON", "paste the service-account key file's "
                   "contents as downloaded (or use GC_CREDENTIALS_PATH for its path), " + _TO_FIX)
    if path:
        if path.lstrip()[:1] in ("{", "[", '"') or "\n" in path or len(path) > 4096:
            raise ConfigurationError(
                "GC_CREDENTIALS_PATH: expected the key file's path, got text that looks like "
                "the file's contents (not shown); put the contents in GC_CREDENTIALS_JSON, or "
                "save them to a file and give its path here"
            )
        if not os.environ.get("PUBSUB_EMULATOR_HOST"):
            _check_key(_read_key_file(path), "GC_CREDENTIALS_PATH: the file",
                       "point it at the service-account key file as downloaded, " + _TO_FIX)


def _read_key_file(path: str) -> str:
    relative = f"relative paths start from {os.getcwd()}"
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise ConfigurationError(
            f"GC_CREDENTIALS_PATH: there is no file at that path ({relative}); point it at the "
            f"service-account key file (JSON), {_TO_FIX}"
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(
            "GC_CREDENTIALS_PATH: the path is a directory; point it at the service-account "
            f"key file (JSON) in it, {_TO_FIX}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(
            "GC_CREDENTIALS_PATH: the file is not text; a service-account key file is JSON "
            "(download one with 'gcloud iam service-accounts keys create')"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigurationError(
            f"GC_CREDENTIALS_PATH: cannot read the file ({reason}); make it readable by this "
            f"process, {_TO_FIX}"
        ) from None
    if len(text) > _MAX_KEY_FILE:
        raise ConfigurationError(
            f"GC_CREDENTIALS_PATH: the file is over {_MAX_KEY_FILE // 1024} KiB, too big to be "
            "a service-account key file; check the path"
        )
    return text


def _check_key(text: str, where: str, fix: str) -> None:
    """``text`` is a service-account key file's contents; errors name ``where``, the
    shape of what is wrong and the ``fix``, never the contents."""
    try:
        info = json.loads(text)
    except ValueError as exc:
        at = f" ({exc.msg}: line {exc.lineno} column {exc.colno})" if isinstance(
            exc, json.JSONDecodeError) else ""
        bare = text.lstrip().startswith("-----BEGIN") and "PRIVATE KEY-----" in text
        pem = "; it holds a bare PEM key, not the JSON key file" if bare else ""
        raise ConfigurationError(f"{where} is not valid JSON{at}{pem}; {fix}") from None
    if not isinstance(info, dict):
        raise ConfigurationError(
            f"{where} must be a JSON object (a service-account key file), got a JSON "
            f"{_JSON_KINDS.get(type(info), type(info).__name__)}; {fix}"
        )
    kind = info.get("type")
    if isinstance(kind, str) and kind != "service_account":
        raise ConfigurationError(
            f"{where} holds {shown(kind, limit=40)} credentials, not a service-account key; "
            f"{fix}"
        )
    missing = [field for field in _KEY_FIELDS if not info.get(field)]
    if missing:
        raise ConfigurationError(
            f"{where} is not a complete service-account key: it has no {', '.join(missing)}; "
            f"{fix}"
        )
    if not isinstance(info["private_key"], str) or "PRIVATE KEY-----" not in info["private_key"]:
        raise ConfigurationError(
            f"{where}: its private_key (not shown) is not a PEM private key; {fix}"
        )


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}
