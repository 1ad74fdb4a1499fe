"""Filters: a bad one is a loud, nacked failure of that message, never a silent hold or drop.

A filter is ``f(**attributes) -> bool``. One that raises (anything, even
``KeyboardInterrupt``) or returns something other than a bool fails the message
like a handler exception: nacked, ``post_process_message_failure``, an ERROR
naming the filter. An ``async def`` filter is refused when it is declared.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import relay
import relay.testing
from relay import Action, MiddlewareChain, Status, Subscription, Worker, sub
from relay.contrib.logging_middleware import LoggingMiddleware
from relay.errors import ConfigurationError, FilterError
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, settings, wait_for

KINDS = pytest.mark.parametrize("is_async", [False, True], ids=["sync-handler", "async-handler"])


def _handler(handled: list[Any], is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def handle_async(data: Any, **attrs: Any) -> None:
            handled.append(attrs.get("n"))

        return handle_async

    def handle(data: Any, **attrs: Any) -> None:
        handled.append(attrs.get("n"))

    return handle


def _worker(subs: list[Any], *middleware: Any, **kw: Any) -> tuple[Worker, MemoryTransport]:
    transport = MemoryTransport()
    w = Worker(
        subs, settings=settings(**kw), transport=transport, middleware=MiddlewareChain(middleware)
    )
    return w, transport


def _name(f: Any) -> str:
    return f"{f.__module__}.{f.__qualname__}"


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------ raising filters
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@KINDS
def test_a_filter_raising_keyboard_interrupt_or_system_exit_is_nacked_and_the_worker_goes_on(
    kind: type[BaseException], is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def interrupting(**attrs: str) -> bool:
        calls.append(attrs["n"])
        if len(calls) == 1:
            raise kind()
        return True

    handled: list[Any] = []
    s = sub(topic="orders", filter_by=interrupting)(_handler(handled, is_async))
    rec = Recorder()
    w, t = _worker([s], LoggingMiddleware(), rec)
    with caplog.at_level(logging.INFO, logger="relay"), w:
        t.publish("orders", b"{}", {"n": "1"}).result(1)
        wait_for(lambda: t.stats("orders")["acked"] == 1)  # redelivered, then handled
        t.publish("orders", b"{}", {"n": "2"}).result(1)
        wait_for(lambda: t.stats("orders")["acked"] == 2)  # the worker is still alive
    assert handled == ["1", "2"]
    assert t.stats("orders")["nacked"] == 1
    [failure] = rec.hooks("post_process_message_failure")
    assert failure.status is Status.FAILURE and failure.action is Action.NACK
    assert isinstance(failure.exception, FilterError)
    assert isinstance(failure.exception.__cause__, kind)
    [error] = _errors(caplog)
    assert f"FilterError: filter {_name(interrupting)} raised {kind.__name__}" in error
    assert "failed (nack)" in error


@KINDS
def test_a_filter_raising_an_exception_is_nacked_with_the_filter_named(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**attrs: str) -> bool:
        return int(attrs["n"]) > 0

    handled: list[Any] = []
    s = sub(topic="orders", filter_by=broken)(_handler(handled, is_async))
    with caplog.at_level(logging.INFO, logger="relay"), relay.testing.memory_app() as env:
        relay.publish("orders", {}, n="x")
        [outcome] = env.deliver([s], raise_errors=False)
        relay.publish("orders", {}, n="x")
        with pytest.raises(FilterError, match="raised ValueError: invalid literal") as info:
            env.deliver([s])
    assert handled == []
    assert outcome.action is Action.NACK and isinstance(outcome.exception, FilterError)
    assert isinstance(info.value.__cause__, ValueError)
    assert f"filter {_name(broken)} raised ValueError" in _errors(caplog)[0]


# ------------------------------------------------------------------ filters that return no bool
def forgot_return(**attrs: str) -> Any:
    attrs.get("region")


def returns_the_value(**attrs: str) -> Any:
    return attrs.get("region")


async def _check_region() -> bool:
    return True


_coroutines: list[Any] = []


def returns_a_coroutine(**attrs: str) -> Any:
    coroutine = _check_region()
    _coroutines.append(coroutine)
    return coroutine


@pytest.mark.parametrize(
    ("filter_", "said"),
    [
        (forgot_return, "returned None, not a bool: did it forget a `return`?"),
        (returns_the_value, "returned 'eu' (str), not a bool: return True to handle"),
        (returns_a_coroutine, "returned a coroutine, not a bool: filters cannot be async"),
    ],
    ids=["None", "str", "coroutine"],
)
@KINDS
def test_a_filter_that_does_not_return_a_bool_is_nacked_with_an_error_naming_it(
    filter_: Callable[..., Any], said: str, is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[Any] = []
    s = sub(topic="orders", filter_by=filter_)(_handler(handled, is_async))
    rec = Recorder()
    default_middleware = relay.Settings().middleware  # LoggingMiddleware
    _coroutines.clear()
    with caplog.at_level(logging.INFO, logger="relay"), relay.testing.memory_app(
        middleware=[*default_middleware, rec]
    ) as env:
        relay.publish("orders", {}, region="eu")
        [outcome] = env.deliver([s], raise_errors=False)
        assert handled == []
        assert outcome.status is Status.FAILURE and outcome.action is Action.NACK
        assert isinstance(outcome.exception, FilterError)
        assert str(outcome.exception).startswith(f"filter {_name(filter_)} {said}")
        assert [o.exception for o in rec.hooks("post_process_message_failure")] == [
            outcome.exception
        ]
        [error] = _errors(caplog)
        assert "failed (nack)" in error and f"filter {_name(filter_)} {said}" in error
    # closed, so never run and no "coroutine ... was never awaited" RuntimeWarning
    assert [inspect.getcoroutinestate(c) for c in _coroutines] == (
        [inspect.CORO_CLOSED] if filter_ is returns_a_coroutine else []
    )


def test_a_global_filter_returning_none_fails_the_message_too() -> None:
    handled: list[Any] = []
    s = sub(topic="orders")(_handler(handled, False))
    with relay.testing.memory_app(filter_subs_by=[forgot_return]) as env:
        relay.publish("orders", {})
        with pytest.raises(FilterError, match="did it forget a `return`"):
            env.deliver([s])
    assert handled == []


def test_accepts_raises_the_same_error_as_the_worker() -> None:
    s = sub(topic="orders", filter_by=[lambda **a: True, forgot_return])(_handler([], False))
    with pytest.raises(FilterError, match=f"filter {_name(forgot_return)} returned None"):
        s.accepts({})
    rejects = sub(topic="orders", filter_by=lambda **a: False)(_handler([], False))
    assert rejects.accepts({}) is False


# ------------------------------------------------------------------ async filters
async def async_filter(**attrs: str) -> bool:
    return True


async def async_generator_filter(**attrs: str) -> AsyncIterator[bool]:
    yield True


class AsyncCall:
    async def __call__(self, **attrs: str) -> bool:
        return True


class Holder:
    async def method(self, **attrs: str) -> bool:
        return True


ASYNC_FILTERS = pytest.mark.parametrize(
    ("filter_", "named"),
    [
        (async_filter, _name(async_filter)),
        (async_generator_filter, _name(async_generator_filter)),
        (AsyncCall(), f"{__name__}.AsyncCall instance"),
        (Holder().method, _name(Holder.method)),
        (functools.partial(async_filter, region="eu"), _name(async_filter)),
    ],
    ids=["async-def", "async-generator", "async-call", "async-method", "partial"],
)


def _ok(data: Any, **attrs: Any) -> None: ...


@ASYNC_FILTERS
def test_an_async_filter_is_rejected_by_sub(filter_: Any, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        sub(topic="orders", filter_by=filter_)(_ok)
    text = str(info.value)
    assert text.startswith(f"filter_by of {_name(_ok)}: {named} is async")
    assert "make it a plain def" in text


@ASYNC_FILTERS
def test_an_async_filter_is_rejected_by_a_class_based_subscription(
    filter_: Any, named: str
) -> None:
    class OnlyEu(Subscription):
        topic = "orders"

        def __init__(self) -> None:
            super().__init__(self.handle, self.topic, filter_by=[lambda **a: True, filter_])

        def handle(self, data: Any, **attrs: Any) -> None: ...

    with pytest.raises(ConfigurationError, match=f"{named} is async"):
        OnlyEu()


@ASYNC_FILTERS
def test_an_async_filter_is_rejected_in_filter_subs_by(filter_: Any, named: str) -> None:
    with pytest.raises(ConfigurationError, match=r"(?i)filter_subs_by.*is async") as info:
        settings(filter_subs_by=[filter_])
    assert named in str(info.value)


# ------------------------------------------------------------------ regression: False skips
@KINDS
def test_a_filter_returning_false_still_acks_the_message_as_skipped(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[Any] = []
    s = sub(topic="orders", filter_by=lambda **a: a.get("n") != "1")(_handler(handled, is_async))
    rec = Recorder()
    w, t = _worker(
        [s], LoggingMiddleware(), rec, filter_subs_by=[lambda **a: a.get("n") != "2"]
    )
    with caplog.at_level(logging.INFO, logger="relay"), w:
        for n in ("1", "2", "3"):
            t.publish("orders", b"{}", {"n": n}).result(1)
        wait_for(lambda: t.stats("orders")["acked"] == 3)
    assert handled == ["3"]
    assert t.stats("orders")["nacked"] == 0
    statuses = sorted(o.status.value for _, o in rec.hooks("post_process_message"))
    assert statuses == ["skipped", "skipped", "success"]
    assert rec.hooks("post_process_message_failure") == []
    assert _errors(caplog) == []
    assert sum(" skipped in " in r.getMessage() for r in caplog.records) == 2
