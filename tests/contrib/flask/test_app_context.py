"""One Flask app context per message: on worker threads, on the event loop, in failure."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from flask import Flask, current_app, g

import relay
from relay import BaseMiddleware, Message, Outcome, Settings, Subscription
from relay.contrib.flask import AppContextMiddleware, Relay
from relay.middleware import MiddlewareChain
from relay.results import ResultsMiddleware
from relay.testing import memory_app
from tests.contrib.flask.conftest import Outcomes


def make_app(name: str = "shop") -> tuple[Flask, list[Any]]:
    """An app whose teardown function records ``(g.order, the error)``."""
    app = Flask(name)
    teardowns: list[Any] = []

    @app.teardown_appcontext
    def record(error: BaseException | None) -> None:
        teardowns.append((g.get("order"), error))

    return app, teardowns


class ContextOnInstance(BaseMiddleware):
    """Relé's Flask middleware, in substance: the context is kept on ``self``."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        self.context = self.app.app_context()
        self.context.push()

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        self.context.pop()


def two_in_flight(app: Flask, context: BaseMiddleware) -> dict[int, tuple[int, int, int]]:
    """Two messages handled at once on two threads, both inside the handler together
    (a barrier); returns ``{order: (g.order read after the barrier, id(g), thread)}``."""
    barrier = threading.Barrier(2, timeout=10)
    seen: dict[int, tuple[int, int, int]] = {}

    @relay.sub("orders")
    def handle(data: Any, **attrs: str) -> None:
        g.order = data["id"]
        barrier.wait()  # both messages are in a handler now, each with its own context
        seen[data["id"]] = (g.order, id(g._get_current_object()), threading.get_ident())

    outcomes = Outcomes()
    settings = Settings(transport="memory", concurrency=2, middleware=(context, outcomes))
    with memory_app(settings) as env, env.worker([handle]):
        relay.publish("orders", {"id": 1})
        relay.publish("orders", {"id": 2})
        outcomes.wait(2)
    assert [o.status.value for _, _, o in outcomes.seen] == ["success", "success"]
    return seen


def test_two_messages_in_flight_never_share_g_and_each_context_is_torn_down() -> None:
    app, teardowns = make_app()

    seen = two_in_flight(app, AppContextMiddleware(app))

    assert seen[1][0] == 1 and seen[2][0] == 2
    assert seen[1][1] != seen[2][1]  # two g objects
    assert seen[1][2] != seen[2][2]  # on two threads
    assert sorted(teardowns, key=lambda t: t[0]) == [(1, None), (2, None)]


def test_context_kept_on_the_middleware_instance_breaks_with_two_threads() -> None:
    """The same run with Relé's approach loses a teardown: the test above can fail."""
    app, teardowns = make_app()

    two_in_flight(app, ContextOnInstance(app))

    assert sorted(t[0] for t in teardowns) != [1, 2]


def test_an_async_handler_sees_current_app_and_its_own_g() -> None:
    app, teardowns = make_app("async-shop")
    ext = Relay(app, settings={"TRANSPORT": "memory"})
    outcomes = Outcomes()

    @ext.sub("pings")
    async def ping(data: Any, **attrs: str) -> tuple[str, int]:
        g.order = data["n"]
        await asyncio.sleep(0)
        return current_app.name, g.order

    settings = ext.state(app).settings
    settings = settings.replace(middleware=(*settings.middleware, outcomes))
    with memory_app(settings) as env, env.worker(ext.subscriptions):
        relay.publish("pings", {"n": 7})
        [(_, _, outcome)] = outcomes.wait(1)

    assert outcome.result == ("async-shop", 7)
    assert outcomes.in_context == [True]  # later middleware runs inside the context too
    assert teardowns == [(7, None)]


def test_teardown_runs_with_the_error_when_the_handler_raises() -> None:
    app, teardowns = make_app()
    ext = Relay(app, settings={"TRANSPORT": "memory", "MIDDLEWARE": []})
    failure = ValueError("card declined")

    @ext.sub("charges")
    def charge(data: Any, **attrs: str) -> None:
        g.order = data["id"]
        raise failure

    with memory_app(ext.state(app).settings) as env:
        relay.publish("charges", {"id": 3})
        [outcome] = env.deliver([charge], raise_errors=False)

    assert outcome.action.value == "nack"
    assert teardowns == [(3, failure)]
    from flask import has_app_context

    assert not has_app_context()  # popped: nothing leaks into the caller's thread


def test_the_app_context_is_first_in_the_chain_and_results_come_right_after_it() -> None:
    app = Flask("ordered")
    ext = Relay(app, settings={"RESULTS": "memory", "MIDDLEWARE": [
        "relay.contrib.logging_middleware.LoggingMiddleware"]})

    settings = ext.state(app).settings
    chain = MiddlewareChain.from_settings(settings)

    kinds = [type(m).__name__ for m in chain]
    assert kinds == ["AppContextMiddleware", "ResultsMiddleware", "LoggingMiddleware"]
    assert isinstance(chain.middleware[1], ResultsMiddleware)
    assert relay.get_app().settings is settings  # init_app configured relay's app


def test_a_task_runs_in_the_app_context_and_its_result_is_kept() -> None:
    app = Flask("tasks-app")
    app.config["RELAY"] = {"RESULTS": "memory"}
    ext = Relay(app)

    @ext.task
    def app_name(suffix: str) -> str:
        return current_app.name + suffix

    with memory_app(ext.state(app).settings) as env:
        handle = app_name.delay("!")
        env.deliver([app_name])
        assert handle.result(timeout=1) == "tasks-app!"


@pytest.mark.parametrize("raises", [False, True])
def test_a_failing_teardown_is_contained_and_the_context_still_popped(raises: bool) -> None:
    app = Flask("fragile")

    @app.teardown_appcontext
    def broken(error: BaseException | None) -> None:
        if raises:
            raise RuntimeError("teardown failed")

    ext = Relay(app, settings={"TRANSPORT": "memory", "MIDDLEWARE": []})

    @ext.sub("things")
    def handle(data: Any, **attrs: str) -> str:
        return "done"

    with memory_app(ext.state(app).settings) as env:
        relay.publish("things", {})
        [outcome] = env.deliver([handle])

    from flask import has_app_context

    assert outcome.result == "done" and outcome.action.value == "ack"
    assert not has_app_context()
