"""What a handler can say besides return and raise: ``SkipMessage`` (not for me,
ack as skipped) and ``UnrecoverableError`` (never redeliver: dead letter or ack).
Memory transport, through a real Worker, sync and async handlers alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from relay import (
    Action,
    MiddlewareChain,
    SkipMessage,
    Status,
    UnrecoverableError,
    Worker,
    sub,
)
from relay.contrib.logging_middleware import LoggingMiddleware
from relay.contrib.retry import RetryMiddleware
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, settings, wait_for

KINDS = pytest.mark.parametrize("is_async", [False, True], ids=["sync-handler", "async-handler"])


def _raising(error: BaseException, is_async: bool, calls: list[int]) -> Callable[..., Any]:
    if is_async:
        async def handle_async(data: Any, **attrs: Any) -> None:
            calls.append(1)
            raise error
        return handle_async

    def handle(data: Any, **attrs: Any) -> None:
        calls.append(1)
        raise error
    return handle


@KINDS
def test_skip_message_acks_as_skipped_and_logs_the_reason_at_info(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    s = sub(topic="orders")(_raising(SkipMessage("no route for 'x.y'"), is_async, calls))
    rec = Recorder()
    transport = MemoryTransport()
    with caplog.at_level(logging.INFO, logger="relay"), Worker(
        [s], settings=settings(), transport=transport,
        middleware=MiddlewareChain([LoggingMiddleware(), rec, RetryMiddleware(max_retries=3)]),
    ):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert calls == [1]  # not retried in place
    assert transport.stats("orders")["nacked"] == 0
    assert rec.hooks("post_process_message_failure") == []
    [(_, outcome)] = rec.hooks("post_process_message")
    assert outcome.status is Status.SKIPPED and outcome.action is Action.ACK
    assert "skipped" in caplog.text and "no route for 'x.y'" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@KINDS
def test_unrecoverable_error_goes_to_the_dead_letter_topic_when_there_is_one(
    is_async: bool,
) -> None:
    calls: list[int] = []
    s = sub(topic="orders", dead_letter_topic="orders-dead")(
        _raising(UnrecoverableError("record 7 deleted"), is_async, calls)
    )
    rec = Recorder()
    transport = MemoryTransport()
    with Worker([s], settings=settings(), transport=transport,
                middleware=MiddlewareChain([rec, RetryMiddleware(max_retries=3)])):
        transport.publish("orders", b'{"id": 7}', {"kind": "x"}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert calls == [1]
    [dead] = [r for r in transport.published if r.topic == "orders-dead"]
    assert dead.data == b'{"id": 7}'
    assert dead.attributes["relay_dead_letter_reason"] == "UnrecoverableError: record 7 deleted"
    [outcome] = rec.hooks("post_process_message_failure")
    assert outcome.status is Status.FAILURE and outcome.action is Action.DEAD_LETTER
    assert transport.stats("orders")["nacked"] == 0


@KINDS
def test_unrecoverable_error_without_a_dead_letter_topic_is_acked_and_logged(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    s = sub(topic="orders")(_raising(UnrecoverableError("record 7 deleted"), is_async, calls))
    transport = MemoryTransport(redelivery_delay=0.01)
    with caplog.at_level(logging.INFO, logger="relay"), Worker(
        [s], settings=settings(), transport=transport,
        middleware=MiddlewareChain([LoggingMiddleware()]),
    ):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert calls == [1]
    assert transport.stats("orders")["nacked"] == 0
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "failed (ack)" in error and "UnrecoverableError: record 7 deleted" in error
