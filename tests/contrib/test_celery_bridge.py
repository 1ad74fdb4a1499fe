"""The Celery bridge routing messages, with a real Celery app and a real Celery worker.

relay runs on its memory transport (a real ``Worker``, threads and all); Celery
runs an embedded worker thread (``celery.contrib.testing.worker.start_worker``)
on Celery's in-memory broker, with a unique queue per test, stopped at the end
of each test. The same helpers serve test_celery_bridge_emulator.py.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

import relay
from relay.contrib.celery import CeleryBridge, RouteError, SendError, Subscriber
from relay.errors import UnrecoverableError
from relay.message import Action, Message, Outcome, Status
from relay.subscription import Subscription
from relay.testing import MemoryEnvironment, memory_app

RESULT_TIMEOUT = 10.0


# ------------------------------------------------------------------ helpers (shared)
def make_celery_app() -> Celery:
    """A Celery app on the in-memory broker, with a queue of its own, and one task.

    ``tests.echo`` returns what it was called with, the queue it came from and
    its ETA (set by ``countdown``), so a test can read them back by task id.
    """
    queue = f"relay-{uuid.uuid4().hex[:10]}"
    app = Celery(queue, broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_transport_options={"polling_interval": 0.01},
        worker_hijack_root_logger=False,  # keep pytest's log capture
    )

    @app.task(bind=True, name="tests.echo", shared=False)
    def echo(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {
            "args": list(args), "kwargs": kwargs,
            "queue": self.request.delivery_info.get("routing_key"), "eta": self.request.eta,
        }

    return app


@contextlib.contextmanager
def celery_worker(app: Celery, *queues: str) -> Iterator[Any]:
    """A real Celery worker thread consuming the app's queue (and ``queues``).

    Stopped with a remote-control shutdown before ``start_worker`` joins the
    thread: its own stop waits out the memory broker's 2 s polls, twice.
    """
    # start_worker sets the root logger's level (to ERROR) and leaves it so,
    # which would hide every later test's warnings: put it back.
    root_level = logging.getLogger().level
    try:
        with start_worker(
            app, perform_ping_check=False, queues=[app.conf.task_default_queue, *queues],
            shutdown_timeout=10,
        ) as worker:
            try:
                yield worker
            finally:
                app.control.shutdown(destination=[worker.hostname])
    finally:
        logging.getLogger().setLevel(root_level)


def result_of(app: Celery, task_id: str) -> Any:
    return app.AsyncResult(task_id).get(timeout=RESULT_TIMEOUT, interval=0.01)


class Outcomes(relay.BaseMiddleware):
    """Records ``(message, outcome)`` of every processed message; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[tuple[Message, Outcome]] = []

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        with self._lock:
            self._seen.append((message, outcome))

    def all(self) -> list[tuple[Message, Outcome]]:
        with self._lock:
            return list(self._seen)


def route(task: Any = "tests.echo", key: str = "orders.created", **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "routing_key": key,
        "task": task,
        "should_schedule": lambda routing_key, body: True,
        "get_args": lambda routing_key, body: ([body["id"], routing_key], {"source": "bridge"}),
    }
    item.update(changes)
    return item


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def celery_app() -> Celery:
    return make_celery_app()


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
def env(outcomes: Outcomes) -> Iterator[MemoryEnvironment]:
    with memory_app(
        MIDDLEWARE=["relay.contrib.logging_middleware.LoggingMiddleware", outcomes]
    ) as environment:
        yield environment


@pytest.fixture
def consume(env: MemoryEnvironment) -> Iterator[Callable[[CeleryBridge], relay.Worker]]:
    """``consume(bridge)``: a started relay Worker on the memory transport; stopped after."""
    workers: list[relay.Worker] = []

    def start(bridge: CeleryBridge) -> relay.Worker:
        worker = env.worker([bridge.subscription])
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.stop(timeout=5)


def bridge_for(app: Celery, *routes: dict[str, Any], **keys: Any) -> CeleryBridge:
    return CeleryBridge.from_dict({
        "PUBSUB_EXCHANGE": "events",
        "PUBSUB_GET_CELERY_APP": lambda: app,
        "PUBSUB_TASK_MAPPING": list(routes),
        **keys,
    })


def one_outcome(outcomes: Outcomes, wait_for: Callable[..., Any]) -> tuple[Message, Outcome]:
    (found,) = wait_for(outcomes.all, what="the message's outcome")
    return found


# ------------------------------------------------------------------ routing
def test_a_routed_event_runs_the_celery_task_with_get_args_arguments_and_celery_kwargs(
    celery_app, env, outcomes, consume, wait_for
):
    extra_queue = f"{celery_app.conf.task_default_queue}-reports"
    bridge = bridge_for(celery_app, route(
        celery_kwargs=lambda routing_key, body: {"countdown": 0.2, "queue": extra_queue},
    ))
    with celery_worker(celery_app, extra_queue):
        consume(bridge)
        bridge.publish_event("orders.created", {"id": 7}).result(timeout=5)

        message, outcome = one_outcome(outcomes, wait_for)
        assert (outcome.status, outcome.action) == (Status.SUCCESS, Action.ACK)
        ran = result_of(celery_app, outcome.result)  # the result is the Celery task id

    assert ran["args"] == [7, "orders.created"] and ran["kwargs"] == {"source": "bridge"}
    assert ran["queue"] == extra_queue  # celery_kwargs applied: the queue...
    assert ran["eta"] is not None  # ...and the countdown
    assert message.attributes["routing_key"] == "orders.created"
    stats = env.transport.stats(bridge.subscription.name)
    assert (stats["acked"], stats["nacked"]) == (1, 0)


def test_a_task_object_is_sent_with_its_own_app_and_needs_no_get_celery_app(
    celery_app, env, outcomes, consume, wait_for
):
    @celery_app.task(name="tests.total", shared=False)
    def total(n: int, routing_key: str, source: str) -> str:
        return f"{n} {routing_key} {source}"

    bridge = CeleryBridge.from_dict({  # no PUBSUB_GET_CELERY_APP: task.apply_async is used
        "PUBSUB_EXCHANGE": "events",
        "PUBSUB_TASK_MAPPING": [route(total, key="orders.paid")],
    })
    with celery_worker(celery_app):
        consume(bridge)
        bridge.publish_event("orders.paid", {"id": 3}).result(timeout=5)
        _, outcome = one_outcome(outcomes, wait_for)
        assert outcome.status is Status.SUCCESS
        assert result_of(celery_app, outcome.result) == "3 orders.paid bridge"


def test_an_event_with_no_route_is_acked_as_skipped_with_a_warning(
    celery_app, env, outcomes, consume, wait_for, caplog
):
    bridge = bridge_for(celery_app, route())
    consume(bridge)
    with caplog.at_level(logging.INFO):
        bridge.publish_event("orders.deleted", {"id": 1}).result(timeout=5)
        relay.publish("events", {"id": 2}).result(timeout=5)  # no routing key at all
        seen = wait_for(lambda: len(outcomes.all()) == 2 and outcomes.all(), what="2 outcomes")

    for _, outcome in seen:
        assert (outcome.status, outcome.action) == (Status.SKIPPED, Action.ACK)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name == "relay.contrib.celery"]
    assert sorted(warnings) == [
        "a message on topic 'events' has no 'routing_key' attribute (routes: orders.created); "
        "acked and reported as skipped",
        "a message on topic 'events' has the routing key 'orders.deleted', which no route maps "
        "(routes: orders.created); acked and reported as skipped",
    ]
    assert env.transport.stats(bridge.subscription.name)["acked"] == 2


def test_unrouted_dead_letter_sends_the_event_to_the_dead_letter_topic(
    celery_app, env, outcomes, consume, wait_for
):
    bridge = bridge_for(
        celery_app, route(), PUBSUB_UNROUTED="dead_letter",
        PUBSUB_SUBSCRIPTION_OPTIONS={"dead_letter_topic": "events-dead"},
    )
    consume(bridge)
    bridge.publish_event("orders.deleted", {"id": 1}).result(timeout=5)

    _, outcome = one_outcome(outcomes, wait_for)
    assert (outcome.status, outcome.action) == (Status.FAILURE, Action.DEAD_LETTER)
    (dead,) = wait_for(lambda: [r for r in env.published if r.topic == "events-dead"],
                       what="the dead letter")
    assert dead.attributes["routing_key"] == "orders.deleted"
    assert dead.attributes["relay_dead_letter_reason"].startswith(
        "UnrecoverableError: no Celery route: a message on topic 'events' has the routing key "
        "'orders.deleted', which no route maps"
    )


def test_should_schedule_false_is_a_skip_not_a_success(
    celery_app, env, outcomes, consume, wait_for, caplog
):
    bridge = bridge_for(celery_app, route(should_schedule=lambda key, body: body["id"] > 10))
    consume(bridge)
    with caplog.at_level(logging.INFO, "relay.events"):
        bridge.publish_event("orders.created", {"id": 1}).result(timeout=5)
        message, outcome = one_outcome(outcomes, wait_for)

    assert (outcome.status, outcome.action, outcome.result) == (Status.SKIPPED, Action.ACK, None)
    assert (
        f"message {message.id} on events skipped in" in caplog.text
        and "route 'orders.created': should_schedule returned False, so task 'tests.echo' "
        "was not sent" in caplog.text
    )


# ------------------------------------------------------------------ bad routes
def test_a_route_that_raises_is_nacked_naming_it_then_dead_lettered_by_pub_sub(
    celery_app, env, outcomes, consume, wait_for
):
    bridge = bridge_for(
        celery_app, route(get_args=lambda key, body: ([body["order_id"]], {})),
        PUBSUB_SUBSCRIPTION_OPTIONS={"dead_letter_topic": "events-dead",
                                     "max_delivery_attempts": 5},
    )
    consume(bridge)
    bridge.publish_event("orders.created", {"id": 1}).result(timeout=5)

    (dead,) = wait_for(lambda: [r for r in env.published if r.topic == "events-dead"],
                       what="Pub/Sub's dead letter after 5 attempts")
    seen = outcomes.all()
    assert [m.delivery_attempt for m, _ in seen] == [1, 2, 3, 4, 5]  # redelivered, not lost
    for _, outcome in seen:
        assert (outcome.status, outcome.action) == (Status.FAILURE, Action.NACK)
        assert isinstance(outcome.exception, RouteError)
        assert isinstance(outcome.exception.__cause__, KeyError)
    assert str(seen[0][1].exception).startswith(
        "route 'orders.created': get_args tests.contrib.test_celery_bridge."
    )
    assert "raised KeyError: 'order_id'; the message is nacked, so Pub/Sub delivers it again" in (
        str(seen[0][1].exception)
    )
    assert dead.attributes["routing_key"] == "orders.created"


def test_a_route_raising_unrecoverable_error_is_dead_lettered_at_once(
    celery_app, env, outcomes, consume, wait_for
):
    def get_args(key: str, body: Any) -> Any:
        raise UnrecoverableError(f"order {body['id']} no longer exists")

    bridge = bridge_for(celery_app, route(get_args=get_args),
                        PUBSUB_SUBSCRIPTION_OPTIONS={"dead_letter_topic": "events-dead"})
    consume(bridge)
    bridge.publish_event("orders.created", {"id": 9}).result(timeout=5)

    (dead,) = wait_for(lambda: [r for r in env.published if r.topic == "events-dead"],
                       what="the dead letter")
    assert [o.action for _, o in outcomes.all()] == [Action.DEAD_LETTER]
    assert dead.attributes["relay_dead_letter_reason"].startswith(
        "UnrecoverableError: route 'orders.created': get_args "
    )
    assert dead.attributes["relay_dead_letter_reason"].endswith(
        "raised UnrecoverableError: order 9 no longer exists"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"should_schedule": lambda key, body: None},
         "should_schedule tests.contrib.test_celery_bridge.<lambda> returned None (NoneType), "
         "not a bool: return True to send the task or False to skip the message"),
        ({"get_args": lambda key, body: {"id": 1}},
         "returned {'id': 1}, not (args, kwargs): return a list of positional arguments and a "
         "dict of keyword arguments"),
        ({"get_args": lambda key, body: ("abc", {})}, "returned ('abc', {}), not (args, kwargs)"),
        ({"celery_kwargs": lambda key, body: [("countdown", 1)]},
         "returned [('countdown', 1)], not a dict of apply_async options"),
        ({"celery_kwargs": lambda key, body: {"args": [1]}},
         "sets args, which get_args gives; return only apply_async options"),
    ],
)
def test_a_route_returning_the_wrong_thing_fails_the_message_naming_it(
    celery_app, env, changes, expected
):
    bridge = bridge_for(celery_app, route(**changes))
    env.app.publisher.publish("events", {"id": 1}, routing_key="orders.created")

    (outcome,) = env.deliver([bridge.subscription], raise_errors=False)
    assert (outcome.status, outcome.action) == (Status.FAILURE, Action.NACK)
    assert isinstance(outcome.exception, RouteError)
    assert expected in str(outcome.exception)
    assert "the message is nacked, so Pub/Sub delivers it again" in str(outcome.exception)


def test_a_bad_get_celery_app_fails_the_message_and_it_is_nacked(env):
    bridge = CeleryBridge.from_dict({
        "PUBSUB_EXCHANGE": "events",
        "PUBSUB_GET_CELERY_APP": lambda: None,
        "PUBSUB_TASK_MAPPING": [route()],
    })
    bridge.publish_event("orders.created", {"id": 1})

    (outcome,) = env.deliver([bridge.subscription], raise_errors=False)
    assert (outcome.status, outcome.action) == (Status.FAILURE, Action.NACK)
    assert "returned None, not a Celery app" in str(outcome.exception)


# ------------------------------------------------------------------ the broker
def refusing_celery_app(port: int) -> Celery:
    """A Celery app whose broker is a closed loopback port: no retries, a short timeout."""
    app = Celery("refusing", broker=f"amqp://guest:guest@127.0.0.1:{port}//",
                 set_as_current=False)
    app.conf.update(
        broker_connection_timeout=0.5,
        broker_transport_options={"max_retries": 0},
        task_publish_retry=False,
    )
    return app


def test_a_task_the_celery_broker_refuses_is_nacked_and_redelivered(
    env, outcomes, consume, wait_for
):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        app = refusing_celery_app(closed.getsockname()[1])
        bridge = bridge_for(app, route())
        consume(bridge)
        bridge.publish_event("orders.created", {"id": 1}).result(timeout=5)
        seen = wait_for(lambda: len(outcomes.all()) >= 2 and outcomes.all(),
                        what="a redelivery")

    (first, _), (second, _) = seen[:2]
    assert (first.id, first.delivery_attempt, second.delivery_attempt) == (second.id, 1, 2)
    for _, outcome in seen:
        assert (outcome.status, outcome.action) == (Status.FAILURE, Action.NACK)
        assert isinstance(outcome.exception, SendError)
    message = str(seen[0][1].exception)
    assert message.startswith(
        "Celery did not accept task 'tests.echo' for routing key 'orders.created' "
        "(OperationalError: "
    )
    assert message.endswith("the message is nacked, so Pub/Sub delivers it again")
    assert env.transport.stats(bridge.subscription.name)["acked"] == 0


# ------------------------------------------------------------------ Subscriber
def test_subscriber_start_runs_a_worker_until_stop(celery_app, env, wait_for):
    bridge = bridge_for(celery_app, route())
    subscriber = Subscriber(bridge.config, transport=env.transport)
    with celery_worker(celery_app):
        thread = threading.Thread(target=subscriber.start, name="subscriber")
        thread.start()
        try:
            wait_for(lambda: subscriber.worker is not None and subscriber.worker.started,
                     what="the worker to start")
            subscriber.bridge.publish_event("orders.created", {"id": 5}).result(timeout=5)
            name = subscriber.bridge.subscription.name
            wait_for(lambda: env.transport.stats(name)["acked"] == 1, what="the ack")
        finally:
            subscriber.stop()
            thread.join(10)
    assert not thread.is_alive() and subscriber.drained is True
