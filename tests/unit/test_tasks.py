"""@task: declaration, naming, direct calls, binding and encoding before sending, the
wire format, and what a worker does with task messages it cannot run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

import relay
from relay import ConfigurationError, EncodeError, Status, UnrecoverableError, task
from relay.discovery import discover
from relay.provisioning import desired
from relay.settings import Settings
from relay.tasks import Task
from relay.testing import memory_app

calls: list[tuple[Any, ...]] = []


@task
def add(x: int, y: int = 0) -> int:
    calls.append(("add", x, y))
    return x + y


@task("renamed-topic", suffix="worker", ack_deadline=30)
async def notify(user: str, *, loud: bool = False) -> str:
    return f"{user}{'!' if loud else ''}"


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: Decimal
    at: dt.date


@task
def typed(
    when: dt.datetime, key: uuid.UUID, amount: Decimal, colour: Colour, point: Point,
    maybe: dt.date | None = None, raw: Any = None,
) -> list[str]:
    values = [when, key, amount, colour, point, point.x, point.at, maybe, raw]
    return [type(v).__name__ for v in values]


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()


# ------------------------------------------------------------------ declaring
def test_a_task_is_a_subscription_named_after_its_module_and_function() -> None:
    assert isinstance(add, relay.Subscription)
    assert add.topic == f"{__name__}.add" == add.task_name
    assert add.handler_name.endswith("add")
    resolved = add.resolve(Settings(sub_prefix="shop", topic_prefix="dev-"))
    assert resolved.full_topic == f"dev-{__name__}.add"
    assert resolved.name == f"shop-dev-{__name__}.add"
    named = notify.resolve(Settings())
    assert (named.full_topic, named.name, named.ack_deadline) == (
        "renamed-topic", "renamed-topic-worker", 30)
    assert named.is_async and not add.is_async


def test_options_are_checked_like_subs() -> None:
    def fn() -> None: ...

    with pytest.raises(ConfigurationError, match=r"ack_deadline of .* Pub/Sub accepts"):
        task("t-topic", ack_deadline=5)(fn)
    with pytest.raises(ConfigurationError, match=r"unknown option.*retries.*ignore_result"):
        task(retries=3)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"ignore_result of task .* True or False"):
        task("t-topic", ignore_result="yes")(fn)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="invalid topic name 'x!'"):
        task("x!")(fn)
    with pytest.raises(ConfigurationError, match="decorates a function"):
        task(Colour)


def test_functions_in_main_or_nested_ones_need_a_topic() -> None:
    def nested() -> None: ...

    with pytest.raises(ConfigurationError, match=r"inside a function.*@task\('my-topic'\)"):
        task(nested)
    nested.__module__ = "__main__"
    nested.__qualname__ = "nested"
    with pytest.raises(ConfigurationError, match="__main__, a module name the sender"):
        task(nested)
    assert task("explicit-topic")(nested).topic == "explicit-topic"


def test_with_options_returns_a_task() -> None:
    copy = add.with_options(suffix="eu", ignore_result=True)
    assert isinstance(copy, Task) and copy.ignore_result and copy.suffix == "eu"
    assert copy.topic == add.topic


# -------------------------------------------------------------------- calling
def test_calling_the_task_runs_the_function_here() -> None:
    import asyncio

    assert add(2, y=3) == 5
    assert calls == [("add", 2, 3)]
    assert asyncio.run(notify("ada", loud=True)) == "ada!"


def test_delay_publishes_the_documented_wire_format() -> None:
    with memory_app() as env:
        handle = add.delay(2, y=3)
        [record] = env.published
    assert record.topic == add.topic
    assert orjson.loads(record.data) == {"args": [2], "kwargs": {"y": 3}}
    attrs = dict(record.attributes)
    assert attrs.pop("published_at")
    assert attrs == {"relay_task": "1", "relay_task_id": handle.id}
    assert len(handle.id) == 32


def test_arguments_are_bound_before_anything_is_sent() -> None:
    with memory_app() as env:
        with pytest.raises(TypeError, match=rf"task {__name__}.add\(x: int, y: int = 0\) -> "
                                            r"int: missing a required argument: 'x'"):
            add.delay()
        with pytest.raises(TypeError, match="got an unexpected keyword argument 'z'"):
            add.apply_async((1,), {"z": 2})
        with pytest.raises(TypeError, match="args must be a tuple or list"):
            add.apply_async("12")  # type: ignore[arg-type]
        assert env.published == []


def test_arguments_json_cannot_carry_are_refused_before_sending() -> None:
    with memory_app() as env:
        with pytest.raises(EncodeError, match=rf"cannot send task {__name__}.add: relay cannot "
                                              "encode object .* in positional argument 0"):
            add.delay(object())
        with pytest.raises(EncodeError, match=r"float\('nan'\) in argument 'y': JSON has no NaN"):
            add.delay(1, y=float("nan"))
        assert env.published == []


def test_relay_attribute_names_are_reserved() -> None:
    with memory_app() as env:
        with pytest.raises(ConfigurationError, match="relay_task_id are relay's own"):
            add.apply_async((1,), attrs={"relay_task_id": "mine"})
        add.apply_async((1,), attrs={"tenant": "eu"}, ordering_key="k")
        [record] = env.published
        assert record.attributes["tenant"] == "eu" and record.ordering_key == "k"


def test_countdown_and_eta_are_checked_when_sent() -> None:
    with memory_app() as env:
        with pytest.raises(ConfigurationError, match="countdown or eta, not both"):
            add.apply_async((1,), countdown=1, eta=dt.datetime.now(dt.timezone.utc))
        with pytest.raises(ConfigurationError, match="countdown=-1; expected seconds"):
            add.apply_async((1,), countdown=-1)
        with pytest.raises(ConfigurationError, match="timezone-aware datetime"):
            add.apply_async((1,), eta=dt.datetime(2030, 1, 1))
        with pytest.raises(ConfigurationError, match="delay of 3541 s is longer than relay can "
                                                     "hold a task \\(3540 s"):
            add.apply_async((1,), countdown=3541)
        assert env.published == []
        eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=90)
        add.apply_async((1,), eta=eta)
        add.apply_async((1,), countdown=0)  # due now: no ETA at all
        first, second = env.published
        assert dt.datetime.fromisoformat(first.attributes["relay_eta"]) == eta
        assert "relay_eta" not in second.attributes


def test_the_longest_delay_follows_flow_max_lease_duration() -> None:
    with memory_app(FLOW_MAX_LEASE_DURATION=7200) as env:
        add.apply_async((1,), countdown=7000)
        assert len(env.published) == 1


# -------------------------------------------------------------------- working
def test_the_worker_turns_json_back_into_annotated_types() -> None:
    key = uuid.uuid4()
    with memory_app(RESULTS="memory") as env:
        handle = typed.delay(
            dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc), key, Decimal("1.10"),
            Colour.RED, Point(Decimal("2.5"), dt.date(2026, 1, 2)), maybe=None,
            raw=dt.date(2026, 1, 2),
        )
        env.deliver([typed])
        assert handle.result(timeout=1) == [
            "datetime", "UUID", "Decimal", "Colour", "Point", "Decimal", "date", "NoneType",
            "str",  # not annotated: as JSON carries it
        ]


def _run_raw(data: bytes, attributes: dict[str, str], **settings: Any) -> Any:
    """Publish bytes to add's topic by hand and run one message through a worker."""
    with memory_app(**settings) as env:
        worker = env.worker([add])
        worker.setup()
        env.transport.publish(add.topic, data, attributes).result()
        with worker:
            stats = env.transport.stats(add.resolve(env.settings).name)
            deadline = dt.datetime.now() + dt.timedelta(seconds=5)
            while stats["acked"] + stats["nacked"] == 0 and dt.datetime.now() < deadline:
                stats = env.transport.stats(add.resolve(env.settings).name)
        return env, stats


def test_a_task_message_published_by_hand_runs() -> None:
    _, stats = _run_raw(b'{"args": [40], "kwargs": {"y": 2}}', {})
    assert calls == [("add", 40, 2)]
    assert stats["acked"] == 1


@pytest.mark.parametrize(
    ("data", "attributes", "error"),
    [
        (b'{"args": [1]}', {"relay_task": "2"},
         "wire format version '2' and this worker reads version 1; upgrade relay"),
        (b'{"args": [1, 2, 3]}', {},
         "arguments do not fit add\\(x: int, y: int = 0\\) -> int \\(too many positional "
         "arguments\\); was the function changed"),
        (b'[1, 2]', {}, "the message data is a list, not a task call"),
        (b'{"args": [1], "priority": 3}', {}, "unknown key\\(s\\) priority"),
        (b'{"args": [1]}', {"relay_eta": "tomorrow"}, "relay_eta='tomorrow' is not an ISO 8601"),
    ],
    ids=["wire-version", "no-longer-binds", "not-an-object", "unknown-key", "bad-eta"],
)
def test_a_message_the_task_cannot_run_is_dead_lettered_not_retried(
    data: bytes, attributes: dict[str, str], error: str
) -> None:
    env, stats = _run_raw(data, attributes, DEAD_LETTER_TOPIC="{topic}-dead",
                          DEFAULT_RETRY_POLICY=None)
    assert calls == []
    assert stats["nacked"] == 0 and stats["acked"] == 1
    [dead] = [r for r in env.transport.published if r.topic == f"{add.topic}-dead"]
    assert dead.data == data
    reason = dead.attributes["relay_dead_letter_reason"]
    assert reason.startswith("UnrecoverableError: task ")
    assert re.search(error, reason), reason


def test_without_a_dead_letter_topic_it_is_acked_and_reported() -> None:
    with memory_app() as env:
        env.transport.publish(add.topic, b'{"args": []}', {}).result()
        [outcome] = env.deliver([add], raise_errors=False)
    assert outcome.status is Status.FAILURE and outcome.action.value == "ack"
    assert isinstance(outcome.exception, UnrecoverableError)
    assert "missing a required argument: 'x'" in str(outcome.exception)


# ---------------------------------------------------------------- discovery
def test_relay_cli_discovers_tasks_like_subs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "subs.py").write_text(
        "from relay import sub, task\n"
        "@task\ndef charge(order_id: int) -> None: ...\n"
        "@sub('orders')\ndef on_order(data, **attrs): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = discover(tmp_path, settings=Settings(sub_prefix="w"))
        assert sorted(s.topic for s in found) == ["orders", "shop.subs.charge"]
        assert [type(s).__name__ for s in found if s.topic == "orders"] == ["Subscription"]
        wanted = desired([s.resolve(Settings(sub_prefix="w")) for s in found], Settings())
        assert set(wanted.topics) == {"orders", "shop.subs.charge"}
        assert {spec.name for spec in wanted.subscriptions} == {"w-orders", "w-shop.subs.charge"}
    finally:
        import sys

        for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
            del sys.modules[name]
