"""bytes <-> data. JSON through orjson, decoded once per message.

orjson already encodes ``datetime``, ``date``, ``time``, ``UUID``, dataclasses and
enums natively (and fast). relay's ``default`` adds ``Decimal`` (as a string, so
no precision is lost), sets and frozensets (as lists) and bytes (as UTF-8 text),
then falls back to the ``ENCODER`` setting: a callable ``obj -> JSON-able`` or a
``json.JSONEncoder`` subclass whose ``default`` method is used (Relé's form).

What JSON cannot carry is refused with an ``EncodeError`` naming the value, its
path inside the data (``data['readings'][3]``) and the fix: NaN and infinity
(orjson would write ``null``, changing the data silently), integers beyond 64
bits, bytes that are not UTF-8, types nothing knows how to encode. Encoding a
normal message costs one orjson call and one scan of its output for ``null``:
the data is walked in Python only when orjson refused it, or when the output
holds a ``null`` that may stand for a NaN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import orjson

from relay.errors import DecodeError, EncodeError

_OPTIONS = orjson.OPT_NON_STR_KEYS
#: The integers orjson encodes: signed and unsigned 64-bit.
_MIN_INT = -(2**63)
_MAX_INT = 2**64 - 1
#: orjson's limits: containers nested in one another, and ``default`` results
#: that need ``default`` again.
_MAX_DEPTH = 254
_MAX_DEFAULT_CHAIN = 255
#: Types whose values orjson always encodes as they are.
_FINE = frozenset({str, bool, type(None)})
_NATIVE_LEAVES = (str, dt.date, dt.time, uuid.UUID, orjson.Fragment)  # a datetime is a date
_NATIVE_KEYS = (str, dt.date, dt.time, uuid.UUID, enum.Enum, type(None))


class _Unencodable(TypeError):
    """Raised by ``default`` for a type that neither relay nor ``ENCODER`` handles."""


_UNENCODABLE_FIX = (
    "convert it before publishing or set the ENCODER setting to a function that returns "
    "something JSON-able"
)
_NON_FINITE_FIX = (
    "JSON has no NaN or infinity (orjson would send null, silently changing the data); "
    "use None, or a string such as 'nan', instead"
)
_INT_FIX = (
    "it does not fit in 64 bits (relay sends integers from -2**63 to 2**64-1); "
    "pass it as a string, e.g. str(value), and convert it back in the handler"
)
_BYTES_FIX = (
    "and relay sends bytes as UTF-8 text: encode them first, "
    "e.g. base64.b64encode(value).decode()"
)


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
                raise _Unencodable(
                    f"relay cannot encode {_describe(obj)}; {_UNENCODABLE_FIX}"
                ) from None
            return fallback(obj)

    return default


def _describe(obj: Any) -> str:
    return f"{type(obj).__name__} {obj!r:.80}"


def _int_text(value: int) -> str:
    # str() refuses integers of more than 4300 digits: give the size instead.
    if value.bit_length() > 1024:
        return f"an integer of {value.bit_length()} bits"
    return f"the integer {int(value)}"


class _Problem:
    """The first value in the data that cannot be sent as it is."""

    __slots__ = ("cause", "path", "silent", "what", "why")

    def __init__(
        self, what: str, why: str, cause: BaseException | None = None, *, silent: bool = False
    ) -> None:
        self.what = what
        self.why = why
        self.cause = cause
        #: orjson would have sent it, changed (a NaN as null), without an error.
        self.silent = silent
        #: Steps from the value up to ``data``, innermost first: ``[3]``, ``['k']``,
        #: ``.field``, or ``None`` for "inside a set" (a set has no index).
        self.path: list[str | None] = []

    def error(self) -> EncodeError:
        where = "at data"
        for step in reversed(self.path):
            if step is None:
                where = f"inside the set {where}"
                break
            where += step
        if len(where) > 200:
            where = where[:200] + "..."
        return EncodeError(f"relay cannot encode {self.what} {where}: {self.why}")


def _non_finite(what: str) -> _Problem:
    return _Problem(what, _NON_FINITE_FIX, silent=True)


def _check_key(key: Any) -> _Problem | None:
    """A dict key orjson (with ``OPT_NON_STR_KEYS``) refuses or changes, if it is one."""
    if isinstance(key, _NATIVE_KEYS):
        return None
    if isinstance(key, int):  # and bool
        if _MIN_INT <= key <= _MAX_INT:
            return None
        return _Problem(f"the key ({_int_text(key)}) of the dict", _INT_FIX)
    if type(key) is float:
        if math.isfinite(key):
            return None
        return _non_finite(f"the key float({str(key)!r}) of the dict")
    return _Problem(
        f"the key {key!r:.80} of the dict",
        "dict keys must be str, int, float, bool, None, an enum, a datetime, date, time or "
        "UUID; convert the key, e.g. to a string",
    )


def _is_dataclass(obj: Any) -> bool:
    return hasattr(type(obj), "__dataclass_fields__")


def _is_container(obj: Any) -> bool:
    return isinstance(obj, (dict, list)) or type(obj) is tuple or _is_dataclass(obj)


class _Walk:
    """Finds the value orjson refused, or a NaN it would have turned into ``null``.

    It mirrors what orjson does with each type and calls ``default`` where orjson
    would, so ``ENCODER`` runs again for the values it handles.
    """

    __slots__ = ("default",)

    def __init__(self, default: Callable[[Any], Any]) -> None:
        self.default = default

    def value(self, obj: Any, depth: int) -> _Problem | None:
        """The first problem in ``obj``, at ``depth`` containers inside ``data``."""
        for _ in range(_MAX_DEFAULT_CHAIN + 1):
            cls = type(obj)
            if cls is float:
                return None if math.isfinite(obj) else _non_finite(f"float({str(obj)!r})")
            if isinstance(obj, int):  # int subclasses and bool too, as orjson does
                if _MIN_INT <= obj <= _MAX_INT:
                    return None
                return _Problem(_int_text(obj), _INT_FIX)
            if obj is None or isinstance(obj, _NATIVE_LEAVES):
                return None
            if depth >= _MAX_DEPTH and _is_container(obj):
                return _Problem(
                    f"a {cls.__name__}",
                    f"it is nested more than {_MAX_DEPTH} levels deep, orjson's limit (does "
                    "the data contain itself?); flatten it, or send the inner part as a string",
                )
            if isinstance(obj, dict):
                for key in obj:
                    if type(key) is not str and (bad := _check_key(key)) is not None:
                        return bad
                return self.items(obj.items(), depth, "[{!r}]")
            if isinstance(obj, list) or cls is tuple:
                return self.items(enumerate(obj), depth, "[{}]")
            if _is_dataclass(obj):  # orjson sends its public attributes
                fields = vars(obj) if hasattr(obj, "__dict__") else {
                    f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                }
                public = ((k, v) for k, v in fields.items() if not k.startswith("_"))
                return self.items(public, depth, ".{}")
            if isinstance(obj, enum.Enum):
                obj = obj.value
                continue
            if isinstance(obj, (set, frozenset)):
                return self.items(((None, item) for item in obj), depth, None)
            try:
                obj = self.default(obj)
            except Exception as exc:  # what ``default`` raised is the answer, whatever it is
                return self.refused(obj, exc)
        return _Problem(
            _describe(obj),
            "the ENCODER setting returned values it must encode again, "
            f"{_MAX_DEFAULT_CHAIN} times in a row; make it return something JSON-able",
        )

    def items(
        self, pairs: Iterable[tuple[Any, Any]], depth: int, step: str | None
    ) -> _Problem | None:
        """The first problem among a container's values; ``step`` formats a key as a path."""
        for key, value in pairs:
            cls = type(value)
            if (
                cls in _FINE
                or (cls is int and _MIN_INT <= value <= _MAX_INT)
                or (cls is float and math.isfinite(value))
            ):
                continue
            found = self.value(value, depth + 1)
            if found is not None:
                found.path.append(None if step is None else step.format(key))
                return found
        return None

    def refused(self, obj: Any, exc: Exception) -> _Problem:
        """What to say about ``obj``, given what ``default`` raised for it."""
        if isinstance(exc, UnicodeDecodeError) and isinstance(
            obj, (bytes, bytearray, memoryview)
        ):
            where = f"byte {exc.object[exc.start]:#04x} at offset {exc.start}"
            return _Problem(
                type(obj).__name__, f"they are not UTF-8 ({where}), {_BYTES_FIX}", exc
            )
        if isinstance(exc, _Unencodable):
            return _Problem(_describe(obj), _UNENCODABLE_FIX)
        return _Problem(
            _describe(obj), f"the ENCODER setting raised {type(exc).__name__}: {exc}", exc
        )


#: Exact types sent without any float inside (a Decimal goes as a string).
_NO_FLOAT = frozenset(
    {str, int, bool, type(None), dt.datetime, dt.date, dt.time, uuid.UUID, Decimal}
)


def _may_hide_nan(obj: Any) -> bool:
    """False if ``obj`` surely holds no NaN or infinity; True if it may (walk it then).

    A quick, conservative screen, run when the payload holds ``null``, so that a
    message with ``None`` in it costs little more than one without. A type it
    does not know sends the data to ``_Walk``, which knows them all.
    """
    cls = type(obj)
    if cls is dict:
        for key, value in obj.items():
            if type(key) not in _NO_FLOAT:  # a float key may be NaN
                return True
            cls = type(value)
            if cls in _NO_FLOAT or (cls is float and math.isfinite(value)):
                continue
            if _may_hide_nan(value):
                return True
        return False
    if cls is list or cls is tuple:
        for value in obj:
            cls = type(value)
            if cls in _NO_FLOAT or (cls is float and math.isfinite(value)):
                continue
            if _may_hide_nan(value):
                return True
        return False
    if cls is float:
        return not math.isfinite(obj)
    if isinstance(obj, enum.Enum):
        return _may_hide_nan(obj.value)
    return cls not in _NO_FLOAT


class Codec:
    """Encodes published data and decodes received payloads."""

    __slots__ = ("_default", "_walk")

    def __init__(self, encoder: Any = None) -> None:
        self._default = make_default(encoder)
        self._walk = _Walk(self._default)

    def encode(self, data: Any) -> bytes:
        """``data`` as JSON; ``EncodeError`` if JSON cannot carry it unchanged."""
        try:
            payload = orjson.dumps(data, default=self._default, option=_OPTIONS)
        except orjson.JSONEncodeError as exc:
            found = self._find(data)
            if found is None:  # the walk missed what orjson saw: say what orjson said
                raise EncodeError(f"relay cannot encode the data: {exc}") from exc
            raise found.error() from found.cause
        # orjson writes NaN and infinity as null, like None: only then look closer.
        # (rfind: CPython searches bytes backwards about twice as fast as forwards.)
        if payload.rfind(b"null") >= 0 and _may_hide_nan(data):
            found = self._find(data)
            if found is not None and found.silent:
                raise found.error() from found.cause
        return payload

    def _find(self, data: Any) -> _Problem | None:
        try:
            return self._walk.value(data, 0)
        except RecursionError:
            return None

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
