"""bytes <-> data. JSON through orjson, decoded once per message.

orjson already encodes ``datetime``, ``date``, ``time``, ``UUID``, dataclasses and
enums natively (and fast). relay's ``default`` adds ``Decimal`` (as a string, so
no precision is lost), sets and frozensets (as lists) and bytes (as UTF-8 text),
then falls back to the ``ENCODER`` setting: a callable ``obj -> JSON-able`` or a
``json.JSONEncoder`` subclass whose ``default`` method is used (Relé's form).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from relay.errors import DecodeError

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _builtin_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8")
    raise TypeError


def make_default(encoder: Any = None) -> Callable[[Any], Any]:
    """The ``default`` hook for orjson: relay's types, then the user's encoder."""
    if encoder is None:
        fallback: Callable[[Any], Any] | None = None
    elif isinstance(encoder, type) and issubclass(encoder, json.JSONEncoder):
        fallback = encoder().default
    else:
        fallback = encoder

    def default(obj: Any) -> Any:
        try:
            return _builtin_default(obj)
        except TypeError:
            if fallback is None:
                raise TypeError(
                    f"relay cannot encode {type(obj).__name__} {obj!r:.80}; convert it before "
                    "publishing or set the ENCODER setting to a function that returns "
                    "something JSON-able"
                ) from None
            return fallback(obj)

    return default


class Codec:
    """Encodes published data and decodes received payloads."""

    __slots__ = ("_default",)

    def __init__(self, encoder: Any = None) -> None:
        self._default = make_default(encoder)

    def encode(self, data: Any) -> bytes:
        try:
            return orjson.dumps(data, default=self._default, option=_OPTIONS)
        except orjson.JSONEncodeError as exc:
            # orjson wraps what ``default`` raised; surface that message, it names the fix.
            raise TypeError(str(exc.__cause__ or exc)) from exc.__cause__

    @staticmethod
    def decode(payload: bytes) -> Any:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            if not payload:
                raise DecodeError("payload is empty, not JSON") from None
            try:
                bytes(payload).decode("utf-8")
            except UnicodeDecodeError as bad:
                raise DecodeError(
                    f"payload is not UTF-8 (byte {payload[bad.start]:#04x} at offset "
                    f"{bad.start}), so it is not JSON"
                ) from None
            raise DecodeError(f"payload is not valid JSON: {exc}") from None
