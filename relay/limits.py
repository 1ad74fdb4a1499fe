"""Pub/Sub's limits, checked before anything is sent.

Each check raises ``ConfigurationError`` (a ``ValueError``) naming the offending
name, key or value and saying what Pub/Sub accepts.
See https://cloud.google.com/pubsub/quotas#resource_limits and
https://cloud.google.com/pubsub/docs/create-topic#resource_names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from relay.errors import ConfigurationError

MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
#: Attribute names google-cloud-pubsub's ``publish(topic, data, ordering_key, retry,
#: timeout, **attrs)`` cannot carry, because they are its own parameter names: the
#: pubsub transport's ``unsendable_attributes``. The grpc and memory transports
#: send them; ``validate_attributes`` refuses them unless told what the transport
#: cannot send.
UNSENDABLE_ATTRIBUTES = frozenset({"self", "topic", "data", "ordering_key", "retry", "timeout"})
#: Characters in a key or value short enough to be under the limit in any encoding.
_SHORT_KEY = MAX_ATTRIBUTE_KEY_BYTES // 4
_SHORT_VALUE = MAX_ATTRIBUTE_VALUE_BYTES // 4
#: ``validate_attributes(added=...)`` when the caller set every attribute itself.
NOBODY: Mapping[str, str] = MappingProxyType({})
#: Pub/Sub's resource-name rule: a letter, then letters, digits and - . _ ~ % +.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-._~%+]{2,254}")


def validate_name(name: object, kind: str = "topic") -> str:
    """Check a topic or subscription short name; return it unchanged."""
    if not isinstance(name, str):
        raise ConfigurationError(f"{kind} name must be a string, got {name!r}")
    if _NAME.fullmatch(name) and not name.lower().startswith("goog"):
        return name
    if len(name) < 3 or len(name) > 255:
        why = f"is {len(name)} characters long; Pub/Sub needs 3 to 255"
    elif not name[0].isalpha() or not name[0].isascii():
        why = "must start with a letter"
    elif name.lower().startswith("goog"):
        why = "must not start with 'goog' (reserved by Google)"
    else:
        bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9\-._~%+]", c)})
        why = f"contains {''.join(bad)!r}; only letters, digits and - . _ ~ % + are allowed"
    raise ConfigurationError(f"invalid {kind} name {name!r}: it {why}")


def validate_attributes(
    attributes: Mapping[str, object],
    *,
    added: Mapping[str, str] = NOBODY,
    unsendable: frozenset[str] = UNSENDABLE_ATTRIBUTES,
    transport: str = "",
) -> None:
    """Check message attributes against Pub/Sub's limits.

    ``added`` maps the names of attributes the caller did not set to who added
    them (``{"published_at": "relay"}``): they count like any other, and the
    error for too many says how many are the caller's own and how many it may have.
    ``unsendable``: names the transport cannot send (google-cloud-pubsub's, unless
    told otherwise); ``transport``, the name of the one that cannot, for the error.
    """
    if len(attributes) > MAX_ATTRIBUTES:
        raise ConfigurationError(_too_many(attributes, added))
    if unsendable and not unsendable.isdisjoint(attributes):
        raise ConfigurationError(_unsendable(unsendable.intersection(attributes), transport))
    for key, value in attributes.items():
        # UTF-8 takes at most 4 bytes a character: short strings need no encoding.
        # (A subclass of str takes the long way, through isinstance.)
        if (
            key.__class__ is str
            and value.__class__ is str
            and 0 < len(key) <= _SHORT_KEY
            and len(value) <= _SHORT_VALUE
        ):
            continue
        _check_attribute(key, value)


def _unsendable(names: Iterable[str], transport: str) -> str:
    through = f" through {transport}" if transport else ""
    return (
        f"attribute name(s) {', '.join(sorted(names))} cannot be sent{through}: "
        "google-cloud-pubsub's publish() takes those names as its own parameters; rename "
        'the attribute(s), or publish with relay\'s gRPC transport (TRANSPORT="grpc"), '
        "which sends any attribute name"
    )


def _check_attribute(key: object, value: object) -> None:
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"attribute key {key!r} must be a non-empty string")
    if not isinstance(value, str):
        raise ConfigurationError(
            f"attribute {key!r} has value {value!r} of type {type(value).__name__}; "
            f"attribute values must be str: pass {key}=str(value) or put it in the data"
        )
    if len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES:
        raise ConfigurationError(
            f"attribute key {key[:40]!r}... is {len(key.encode())} bytes; "
            f"the limit is {MAX_ATTRIBUTE_KEY_BYTES}"
        )
    size = len(value.encode())
    if size > MAX_ATTRIBUTE_VALUE_BYTES:
        raise ConfigurationError(
            f"attribute {key!r} is {size} bytes; the limit is {MAX_ATTRIBUTE_VALUE_BYTES}: "
            "put large values in the data"
        )


def _too_many(attributes: Mapping[str, object], added: Mapping[str, str]) -> str:
    total = len(attributes)
    excess = total - MAX_ATTRIBUTES
    by_whom: dict[str, list[str]] = {}
    for name, who in added.items():
        if name in attributes:
            by_whom.setdefault(who, []).append(name)
    if not by_whom:
        return (
            f"a message has {total} attributes; Pub/Sub allows at most {MAX_ATTRIBUTES}: "
            f"remove {excess}, or put their values in the data"
        )
    theirs = sum(len(names) for names in by_whom.values())
    listed = "; ".join(f"{_names(names)} by {who}" for who, names in by_whom.items())
    room = MAX_ATTRIBUTES - theirs
    fix = (
        f"so at most {room} of yours: remove {excess} of yours, or put their values in the data"
        if room >= 0
        else "and those added for you alone are over it: check what adds them"
    )
    return (
        f"a message has {total} attributes: {total - theirs} of yours and {theirs} added for "
        f"you ({listed}); Pub/Sub allows at most {MAX_ATTRIBUTES} in all, {fix}"
    )


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown if len(names) <= 5 else f"{shown} and {len(names) - 5} more"


def validate_payload(topic: str, payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ConfigurationError(
            f"the message for topic {topic!r} encodes to {len(payload)} bytes; Pub/Sub's limit "
            f"is {MAX_PAYLOAD_BYTES} bytes: store the payload elsewhere (e.g. Cloud Storage) "
            "and publish a reference"
        )
