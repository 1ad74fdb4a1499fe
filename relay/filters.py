"""Filters (``filter_by`` and ``FILTER_SUBS_BY``): checked when declared, run per message.

The contract: a filter is a plain (not ``async``) callable, called as
``f(**attributes)`` with the message's attributes, that returns ``True`` to
handle the message or ``False`` to skip it (acked, status ``skipped``).
Anything else fails that message, loudly, never a silent drop or hold:

* ``check_filter`` refuses, when the filter is declared, one that cannot be
  called as ``f(**attributes)`` and one that is async (``async def``, an async
  ``__call__``, an async generator): relay does not await filters, and a
  coroutine is always true, so every message would pass;
* ``run_filters`` raises ``FilterError`` naming the filter when one raises
  (any ``BaseException``, even ``KeyboardInterrupt`` or ``SystemExit``) or
  returns something that is not a bool (``None`` from a forgotten ``return``, a
  string, a coroutine, which it closes). The pipeline nacks the message and
  reports it like a handler exception.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from relay.errors import ConfigurationError, FilterError

Filter = Callable[..., bool]


def describe(func: Any) -> str:
    """``module.qualname`` of a function, method, partial or callable object, for errors."""
    while isinstance(func, functools.partial):
        func = func.func
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None)
    if qualname is None and callable(func):  # an object with a __call__ method
        qualname = f"{type(func).__qualname__} instance"
    return f"{module}.{qualname or repr(func)}"


def _is_async(f: Any) -> bool:
    """``async def`` (or an async generator): plain, bound, partial or as ``__call__``."""
    while isinstance(f, functools.partial):
        f = f.func
    targets = [f] if inspect.isroutine(f) or inspect.isclass(f) else [f, type(f).__call__]
    return any(asyncio.iscoroutinefunction(t) or inspect.isasyncgenfunction(t) for t in targets)


def check_filter(f: Callable[..., Any], owner: str) -> None:
    """Refuse a filter that is async or cannot be called as ``f(**attributes)``."""
    if _is_async(f):
        raise ConfigurationError(
            f"{owner}: {describe(f)} is async, but relay calls filters without awaiting them "
            "(a coroutine is always true, so every message would pass); make it a plain def "
            "that returns True or False, and do any I/O in the handler"
        )
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        required = [
            p.name for p in params
            if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        if not required:
            return
    raise ConfigurationError(
        f"{owner}: {describe(f)} cannot be called as f(**attributes), which is how relay "
        "calls filters (the form Relé documents); write it as lambda **attrs: "
        "attrs.get('type') == 'x'"
    )


def run_filters(filters: Iterable[Filter], attributes: Mapping[str, str]) -> bool:
    """True if every filter returns True; False at the first that returns False.

    A filter that raises anything or returns anything but a bool raises
    ``FilterError`` naming it (``__cause__`` is what it raised).
    """
    for f in filters:
        try:
            verdict = f(**attributes)
        except BaseException as exc:  # even SystemExit: a filter never kills a worker
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise FilterError(f"filter {describe(f)} raised {detail}") from exc
        if verdict is False:
            return False
        if verdict is not True:
            raise FilterError(f"filter {describe(f)} {_not_a_bool(verdict)}")
    return True


def _not_a_bool(verdict: object) -> str:
    if verdict is None:
        return "returned None, not a bool: did it forget a `return`?"
    if inspect.iscoroutine(verdict):
        verdict.close()  # never awaited, on purpose: no "never awaited" RuntimeWarning
        return (
            "returned a coroutine, not a bool: filters cannot be async (relay does not await "
            "them); make it a plain def that returns True or False"
        )
    return (
        f"returned {reprlib.repr(verdict)} ({type(verdict).__name__}), not a bool: return "
        "True to handle the message or False to skip it (wrap the expression in bool(...))"
    )
