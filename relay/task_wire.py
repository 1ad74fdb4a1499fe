"""The task wire format, version 1: what ``.delay()`` publishes and a worker reads.

A task message is an ordinary Pub/Sub message on the task's topic, so anything
that can publish JSON can trigger a task (``gcloud pubsub topics publish``)::

    data:        {"args": [2, 3], "kwargs": {"notify": true}}
    attributes:  relay_task=1            wire version (absent: 1)
                 relay_task_id=<id>      the handle's id (absent: the message id)
                 relay_eta=<ISO 8601>    not before this instant (absent: now)
                 relay_reply_to=<addr>   where the outcome goes (absent: nowhere)

``args`` and ``kwargs`` are both optional; no other key is allowed in version 1.
Values are JSON as relay's codec writes it (``relay.codec``): a ``datetime`` is
an ISO 8601 string, a ``UUID`` and a ``Decimal`` are strings, a dataclass is an
object, an enum is its value. The worker turns them back into those types where
the task function's parameters are annotated with them (``revive``).

A message this worker cannot read (another wire version, a body that is not
that object, arguments that do not fit the function) raises
``UnrecoverableError``: it fails, goes to the dead-letter topic if the
subscription has one (else it is acked and logged), and is never redelivered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from relay.errors import UnrecoverableError

#: The version this relay writes and reads.
VERSION = "1"
ATTR_VERSION = "relay_task"
ATTR_ID = "relay_task_id"
ATTR_ETA = "relay_eta"
ATTR_REPLY_TO = "relay_reply_to"
#: Attributes relay sets on a task message; ``apply_async(attrs=...)`` may not.
RESERVED_ATTRIBUTES = frozenset({ATTR_VERSION, ATTR_ID, ATTR_ETA, ATTR_REPLY_TO})
_KEYS = frozenset({"args", "kwargs"})


def call_data(args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The message data for a call: ``{"args": [...], "kwargs": {...}}``."""
    return {"args": list(args), "kwargs": dict(kwargs)}


def read_call(
    task: str, data: Any, attributes: Mapping[str, str]
) -> tuple[list[Any], dict[str, Any]]:
    """The ``(args, kwargs)`` of a received task message, or ``UnrecoverableError``."""
    version = attributes.get(ATTR_VERSION, VERSION)
    if version != VERSION:
        raise UnrecoverableError(
            f"task {task}: the message is in task wire format version {version!r} and this "
            f"worker reads version {VERSION}; upgrade relay on the workers before the "
            "senders (or send with the older relay)"
        )
    if not isinstance(data, dict):
        raise UnrecoverableError(
            f"task {task}: the message data is a {type(data).__name__}, not a task call; "
            'publish an object {"args": [...], "kwargs": {...}}'
        )
    unknown = set(data) - _KEYS
    if unknown:
        raise UnrecoverableError(
            f"task {task}: the message data has unknown key(s) {', '.join(sorted(unknown))}; "
            'wire format version 1 allows only "args" (a list) and "kwargs" (an object)'
        )
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise UnrecoverableError(
            f"task {task}: \"args\" must be a list and \"kwargs\" an object; got "
            f"{type(args).__name__} and {type(kwargs).__name__}"
        )
    return args, kwargs


# ------------------------------------------------------------------ the ETA
def format_eta(when: float) -> str:
    """Epoch seconds as the ``relay_eta`` attribute: ISO 8601 in UTC."""
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat()


def parse_eta(text: str | None) -> float | None:
    """``relay_eta`` as epoch seconds; None when absent or unreadable (the task's
    handler then reports it as an ``UnrecoverableError``, see ``check_eta``)."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def check_eta(task: str, attributes: Mapping[str, str]) -> None:
    text = attributes.get(ATTR_ETA)
    if text and parse_eta(text) is None:
        raise UnrecoverableError(
            f"task {task}: relay_eta={text!r} is not an ISO 8601 time with a UTC offset, "
            "like 2026-01-01T12:00:00+00:00"
        )


# ------------------------------------------------------------ typed arguments
_Convert = Callable[[Any], Any]


def _converter(annotation: Any) -> _Convert | None:
    """How to turn JSON back into ``annotation``'s type; None to leave values alone."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            return None
        inner = _converter(options[0])
        if inner is None:
            return None
        return lambda value: None if value is None else inner(value)
    if not isinstance(annotation, type):
        return None
    for kind, convert in _SIMPLE:
        if issubclass(annotation, kind):
            return _from_text(annotation, convert)
    if issubclass(annotation, enum.Enum):
        return lambda value: value if isinstance(value, annotation) else annotation(value)
    if dataclasses.is_dataclass(annotation):
        return _dataclass(typing.cast("type", annotation))
    return None


def _from_text(kind: type, convert: _Convert) -> _Convert:
    def run(value: Any) -> Any:
        if isinstance(value, kind) or value is None:
            return value
        return convert(value)

    return run


_SIMPLE: tuple[tuple[type, _Convert], ...] = (
    (dt.datetime, dt.datetime.fromisoformat),  # before date: a datetime is a date
    (dt.date, dt.date.fromisoformat),
    (dt.time, dt.time.fromisoformat),
    (uuid.UUID, uuid.UUID),
    (Decimal, lambda value: Decimal(str(value))),
)


def _dataclass(cls: type) -> _Convert:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: build it from the raw values
        hints = {}
    fields = {f.name: _converter(hints.get(f.name)) for f in dataclasses.fields(cls) if f.init}

    def run(value: Any) -> Any:
        if not isinstance(value, dict):
            return value if isinstance(value, cls) else cls(value)
        values = {
            k: (fields[k](v) if fields.get(k) is not None else v)  # type: ignore[misc]
            for k, v in value.items()
        }
        return cls(**values)

    return run


class Reviver:
    """Turns a bound call's JSON arguments back into their annotated types.

    Built once per task, on the first message (so annotations that name classes
    defined later in the module resolve). Only the types relay's codec writes
    as text or objects are converted: ``datetime``, ``date``, ``time``,
    ``UUID``, ``Decimal``, enums and dataclasses (their fields too), and
    ``X | None`` of those. Anything else arrives as JSON gave it.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._converters: dict[str, _Convert] | None = None

    def _build(self) -> dict[str, _Convert]:
        try:
            hints = typing.get_type_hints(self._fn)
        except Exception:  # a forward reference that cannot be resolved: no conversion
            hints = {}
        out: dict[str, _Convert] = {}
        for name, param in inspect.signature(self._fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name not in hints:
                continue
            convert = _converter(hints[name])
            if convert is not None:
                out[name] = convert
        return out

    def revive(self, task: str, bound: inspect.BoundArguments) -> None:
        """Convert ``bound``'s arguments in place; ``UnrecoverableError`` naming the
        argument when a value cannot be its annotated type."""
        if self._converters is None:
            self._converters = self._build()
        for name, convert in self._converters.items():
            if name not in bound.arguments:
                continue
            value = bound.arguments[name]
            try:
                bound.arguments[name] = convert(value)
            except (TypeError, ValueError, InvalidOperation) as exc:
                raise UnrecoverableError(
                    f"task {task}: argument {name}={value!r:.80} cannot be made a "
                    f"{_type_name(self._fn, name)} ({type(exc).__name__}: {exc})"
                ) from exc


def _type_name(fn: Callable[..., Any], name: str) -> str:
    annotation = inspect.signature(fn).parameters[name].annotation
    return getattr(annotation, "__name__", str(annotation))
