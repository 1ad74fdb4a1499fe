"""Handlers on a real Worker's threads (memory transport) write rows to the test
project's SQLite file, and ``DjangoDBMiddleware`` leaves no connection open:
after each message, or, for persistent connections, when the worker stops.

What the handler threads hold is seen from those threads: ``Recorder`` is put
outermost, so its "after" hook runs after every other one, the database
middleware's included, and notes ``connection.connection is None`` there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import relay
from relay import BaseMiddleware, Message, Outcome, Subscription
from relay.settings import Settings
from relay.testing import memory_app


@dataclass
class Seen:
    thread: str
    closed: bool
    wrapper: Any


class Recorder(BaseMiddleware):
    """Notes, on the handler's thread after everything else, its connection's state."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.changed = threading.Condition()

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        from django.db import connections

        wrapper = connections["default"]
        with self.changed:
            self.seen.append(Seen(threading.current_thread().name, wrapper.connection is None,
                                  wrapper))
            self.changed.notify_all()

    def wait(self, count: int) -> list[Seen]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.seen) >= count, 20), self.seen
            return list(self.seen)


def run_orders(settings: Settings, numbers: range, recorder: Recorder) -> list[Seen]:
    """Publish an order per number and let a 4-thread worker store them; stop it."""
    from tests.contrib.django.project.shop.subs import store_order

    settings = settings.replace(middleware=[recorder, *settings.middleware], concurrency=4)
    with memory_app(settings) as env:
        worker = env.worker([store_order])
        worker.start()
        try:
            for number in numbers:
                relay.publish("shop-orders", {"number": number})
            seen = recorder.wait(len(numbers))
        finally:
            worker.stop()
    return seen


@pytest.fixture
def persistent_connections() -> Iterator[None]:
    """``CONN_MAX_AGE = None`` for connections opened during the test."""
    from django.db import connections

    config = connections.settings["default"]
    before = config["CONN_MAX_AGE"]
    config["CONN_MAX_AGE"] = None
    try:
        yield
    finally:
        config["CONN_MAX_AGE"] = before


def close_leftovers(seen: list[Seen]) -> None:
    for entry in seen:
        wrapper = entry.wrapper
        if wrapper.connection is not None:
            wrapper.inc_thread_sharing()
            try:
                wrapper.close()
            finally:
                wrapper.dec_thread_sharing()


def test_handlers_write_rows_on_worker_threads_and_connections_close_after_each_message(
    orders: Any,
) -> None:
    from relay.contrib.django.conf import relay_settings

    seen = run_orders(relay_settings(), range(1, 21), Recorder())

    rows = list(orders.objects.order_by("number").values_list("number", "handled_by"))
    assert [number for number, _ in rows] == list(range(1, 21))
    assert all(thread.startswith("relay-handler") for _, thread in rows)
    assert all(entry.thread.startswith("relay-handler") for entry in seen)
    assert [entry.closed for entry in seen] == [True] * 20


def test_persistent_connections_stay_between_messages_and_close_when_the_worker_stops(
    orders: Any, persistent_connections: None,
) -> None:
    from relay.contrib.django.conf import relay_settings

    seen = run_orders(relay_settings(), range(1, 9), Recorder())

    assert orders.objects.count() == 8
    assert not any(entry.closed for entry in seen)  # kept open, as CONN_MAX_AGE asks
    # ... and closed by the middleware at worker stop, every thread's
    assert {id(e.wrapper) for e in seen if e.wrapper.connection is not None} == set()


def test_without_the_middleware_connections_are_left_open(orders: Any) -> None:
    """The opt-out works, and shows what the middleware prevents."""
    from django.test import override_settings

    from relay.contrib.django.conf import relay_settings

    with override_settings(RELAY_CLOSE_DB_CONNECTIONS=False):
        settings = relay_settings()
    seen = run_orders(settings, range(1, 5), Recorder())
    try:
        assert orders.objects.count() == 4
        assert not any(entry.closed for entry in seen)
    finally:
        close_leftovers(seen)


def test_deliver_inside_a_test_transaction_leaves_the_transaction_alone(orders: Any) -> None:
    """``env.deliver()`` runs handlers on the test's thread, inside its transaction
    (``TestCase``, pytest-django's ``db``): the middleware must not close that."""
    from django.db import connection, transaction

    from relay.contrib.django.conf import relay_settings
    from tests.contrib.django.project.shop.subs import store_order

    with memory_app(relay_settings()) as env, transaction.atomic():
        relay.publish("shop-orders", {"number": 99})
        env.deliver([store_order])
        assert connection.connection is not None
        assert orders.objects.get(number=99).handled_by == threading.current_thread().name
        transaction.set_rollback(True)
    assert not orders.objects.filter(number=99).exists()
