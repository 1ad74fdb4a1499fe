"""What users get in relay.testing and the relay_memory pytest fixture."""

from typing import Any

import pytest

import relay
from relay import Status
from relay.testing import MemoryEnvironment, memory_app

from .helpers import Recorder, wait_for

stored: list[Any] = []


@relay.sub(topic="orders")
def store_order(data: Any, **attrs: Any) -> int:
    stored.append((data, attrs.get("source")))
    return int(data["id"])


@relay.sub(topic="orders", suffix="async")
async def audit_order(data: Any, **attrs: Any) -> str:
    return f"audited {data['id']}"


@relay.sub(topic="orders", suffix="broken")
def broken(data: Any, **attrs: Any) -> None:
    raise KeyError("customer")


def place_order(order_id: int) -> None:
    relay.publish("orders", {"id": order_id}, source="web")


def test_memory_app_records_and_delivers_synchronously() -> None:
    stored.clear()
    with memory_app() as env:
        place_order(1)
        place_order(2)
        assert env.published_data("orders") == [{"id": 1}, {"id": 2}]
        results = env.deliver([store_order, audit_order])
        assert [o.result for o in results] == [1, 2, "audited 1", "audited 2"]
        assert stored == [({"id": 1}, "web"), ({"id": 2}, "web")]
        # each message is delivered once per subscription
        assert env.deliver([store_order]) == []


def test_deliver_reraises_handler_exceptions_or_returns_them() -> None:
    with memory_app() as env:
        place_order(3)
        with pytest.raises(KeyError, match="customer"):
            env.deliver([broken])
        env.clear()
        place_order(4)
        [outcome] = env.deliver([broken], raise_errors=False)
        assert outcome.status is Status.FAILURE and isinstance(outcome.exception, KeyError)


def test_deliver_runs_the_real_middleware_chain() -> None:
    rec = Recorder()
    with memory_app(MIDDLEWARE=[rec]) as env:
        place_order(5)
        env.deliver([store_order])
        assert len(rec.hooks("pre_publish")) == 1
        assert len(rec.hooks("post_process_message_success")) == 1


def test_memory_app_restores_the_previous_app_and_applies_prefixes() -> None:
    outer = relay.App(relay.Settings.load(environ={}, transport="memory"))
    previous = relay.set_app(outer)
    try:
        with memory_app(TOPIC_PREFIX="pr-7-") as env:
            assert relay.get_app() is env.app
            place_order(6)
            assert env.published[0].topic == "pr-7-orders"
            assert env.published_data("orders") == [{"id": 6}]
            [outcome] = env.deliver([store_order])
            assert outcome.result == 6
        assert relay.get_app() is outer
    finally:
        relay.set_app(previous)


def test_environment_worker_runs_real_threads() -> None:
    with memory_app() as env:
        w = env.worker([store_order])
        with w:
            place_order(7)
            wait_for(lambda: env.transport.stats("orders")["acked"] == 1)


def test_pytest_fixture(relay_memory: MemoryEnvironment) -> None:
    assert relay.get_app() is relay_memory.app
    place_order(8)
    assert relay_memory.published_data("orders") == [{"id": 8}]
