"""Keeping credentials out of text: every error, log line and repr relay writes.

Two rules, applied at the two places text is made:

* A value relay formats into a message goes through ``shown(value)``: a short
  repr, or, when the value holds key material, only its type ("a dict holding a
  private key (not shown)"). Settings whose name says credentials are never
  formatted at all (``relay.setting_values``).
* As a backstop, ``redact(text)`` removes what looks like a secret from text
  that is already made: every ``RelayError`` message (``relay.errors``), relay's
  log formatters (``relay.logs``), ``LoggingMiddleware``'s records, the CLI's
  error line and ``Settings``' repr.

What counts as a secret: a PEM private key, whole or cut short (as in a
truncated preview), with real or JSON-escaped newlines; and the value of a
``private_key``, ``private_key_id``, ``client_secret``, ``refresh_token`` or
``api_key`` field written as JSON or as a Python repr, quoted at any depth of
escaping (a key file inside a JSON string inside a log line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "REDACTED", "describe", "has_secret", "holds_private_key", "holds_secret", "redact", "shown",
]

#: What a PEM private key is replaced with.
REDACTED = "[private key redacted]"
#: What the value of a secret field (``"private_key": "..."``) is replaced with.
REDACTED_FIELD = "[redacted]"

#: The fields of a key file (or of an OAuth client, or client options) that are secrets.
SECRET_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token", "api_key")

#: A PEM private key, whole or cut short, raw or JSON-escaped.
_PEM = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.*?-----END [A-Z ]*PRIVATE KEY-----|.*)", re.DOTALL
)
#: ``"private_key": "..."`` or ``'private_key': '...'``, each quote possibly escaped
#: (``\\"private_key\\": \\"...\\"``), the value possibly cut short.
_FIELD = re.compile(
    r"(?P<name>\\*[\"'](?:" + "|".join(SECRET_FIELDS) + r")\\*[\"'])"
    r"(?P<sep>\s*:\s*)(?P<quote>\\*[\"'])(?:(?!(?P=quote)).)*(?:(?P=quote)|$)",
    re.DOTALL,
)
#: Substrings without which ``redact`` has nothing to do (a fast path for log lines).
_MARKERS = ("PRIVATE KEY", *SECRET_FIELDS)
#: The longest repr ``shown`` writes.
SHOWN_LIMIT = 100


def has_secret(text: str) -> bool:
    """Whether ``redact(text)`` would change anything."""
    return any(marker in text for marker in _MARKERS) and redact(text) != text


def redact(text: str) -> str:
    """``text`` with every PEM private key and secret field value replaced.

    A PEM key becomes ``[private key redacted]``; the value of a secret field
    (see the module docstring) becomes ``[redacted]``, keeping its quotes.
    """
    if not any(marker in text for marker in _MARKERS):
        return text
    text = _PEM.sub(REDACTED, text)
    return _FIELD.sub(
        lambda m: f"{m['name']}{m['sep']}{m['quote']}{REDACTED_FIELD}{m['quote']}", text
    )


def holds_secret(value: Any) -> bool:
    """Whether ``value`` (a str, bytes, or a container of them) holds a secret.

    A mapping with a secret field (see the module docstring) counts whatever the
    field's value: a key file's contents with a broken ``private_key`` is still
    a key file.
    """
    return _holds(value, SECRET_FIELDS, depth=0)


def holds_private_key(value: Any) -> bool:
    """Whether ``value`` holds a PEM private key or a mapping with a ``private_key``
    field: a service-account key, wherever it was put."""
    return _holds(value, ("private_key",), depth=0)


def _holds(value: Any, fields: tuple[str, ...], depth: int) -> bool:
    if depth > 8:
        return False
    if isinstance(value, str):
        return "PRIVATE KEY" in value or any(
            m["name"].strip("\\\"'") in fields for m in _FIELD.finditer(value)
        )
    if isinstance(value, (bytes, bytearray)):
        return _holds(bytes(value).decode("utf-8", "replace"), fields, depth + 1)
    if isinstance(value, Mapping):
        return any(
            (isinstance(k, str) and k in fields) or _holds(k, fields, depth + 1)
            or _holds(v, fields, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds(item, fields, depth + 1) for item in value)
    return False


def describe(value: Any) -> str:
    """``value``'s type as a phrase, without its contents: "a dict", "an int", "bytes"."""
    name = type(value).__name__
    if isinstance(value, (bytes, bytearray)):
        return name
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def shown(value: Any, *, limit: int = SHOWN_LIMIT) -> str:
    """A short repr of ``value`` for an error message; never a secret.

    A value holding key material is described by its type only; any other is
    its repr, cut to ``limit`` characters and passed through ``redact``.
    """
    if holds_secret(value):
        return f"{describe(value)} holding a private key (not shown)"
    try:
        text = redact(repr(value))
    except Exception:  # a broken __repr__ must not hide the real error
        return describe(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
