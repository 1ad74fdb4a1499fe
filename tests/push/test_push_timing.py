"""Time on push: a delayed task waits in the request when it is due within the ack
deadline and is nacked when it is due later; a handler that overruns the ack deadline
is reported."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import relay.push.app as push_app
from relay import App, MiddlewareChain, Settings, sub
from relay.push import PushHandler, Unverified
from relay.tasks import task
from relay.testing import memory_app

from .helpers import Hooks, envelope


def handler_for(subs: list[Any], env: Any) -> PushHandler:
    app = App(env.settings, transport=env.transport, middleware=MiddlewareChain([Hooks()]))
    return PushHandler(subs, verifier=Unverified(), app=app)


def push_of(env: Any, subscription: str) -> bytes:
    """The push request Pub/Sub would send for the last message the app published."""
    record = env.published[-1]
    return envelope(raw=record.data, attributes=record.attributes,
                    subscription=f"projects/relay-test/subscriptions/{subscription}")


def test_a_task_due_within_the_ack_deadline_waits_in_the_request_then_runs() -> None:
    ran: list[float] = []

    @task("push-remind-soon", ack_deadline=30)
    def remind(user: str) -> None:
        ran.append(time.time())

    with memory_app() as env:
        remind.apply_async(("ada",), countdown=0.5)
        sent = time.time()
        handler = handler_for([remind], env)
        answer = handler.handle({}, push_of(env, remind.name))
    assert answer.status == 200, answer.body
    assert len(ran) == 1 and ran[0] >= sent + 0.4  # not before its countdown


def test_a_task_due_later_than_a_request_can_wait_is_nacked_unrun(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @task("push-remind-later", ack_deadline=10)
    def remind(user: str) -> None:
        ran.append(user)

    # A request may wait the ack deadline less this margin: 0.2 s here, not 5 s.
    monkeypatch.setattr(push_app, "DEADLINE_MARGIN", 9.8)
    with memory_app() as env:
        remind.apply_async(("ada",), countdown=600)
        handler = handler_for([remind], env)
        with caplog.at_level(logging.INFO, logger="relay.push"):
            answer = handler.handle({}, push_of(env, remind.name))
    assert (answer.status, answer.body) == (503, "not due\n")
    assert ran == []
    assert "is not due yet" in caplog.text and "max_delivery_attempts" in caplog.text


def test_closing_the_app_ends_a_request_waiting_for_a_task() -> None:
    @task("push-remind-closing", ack_deadline=600)
    def remind(user: str) -> None: ...

    with memory_app() as env:
        remind.apply_async(("ada",), countdown=300)
        handler = handler_for([remind], env)
        answers: list[Any] = []
        waiting = threading.Thread(
            target=lambda: answers.append(handler.handle({}, push_of(env, remind.name)))
        )
        waiting.start()
        time.sleep(0.2)
        handler.close()
        waiting.join(10)
    assert not waiting.is_alive() and answers[0].status == 503


def test_a_handler_past_the_ack_deadline_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(push_app, "_clock", lambda: clock[0])

    @sub(topic="orders", ack_deadline=20)
    def slow(data: Any, **attrs: Any) -> None:
        clock[0] += 25  # the handler "takes" 25 s

    @sub(topic="invoices", ack_deadline=30)
    def quick(data: Any, **attrs: Any) -> None:
        clock[0] += 25  # within its 30 s

    conf = Settings.load(environ={}, gc_project_id="relay-test", transport="memory")
    from relay.transports.memory import MemoryTransport

    app = App(conf, transport=MemoryTransport(), middleware=MiddlewareChain([]))
    handler = PushHandler([slow, quick], verifier=Unverified(), app=app)
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        late = handler.handle({}, envelope({"n": 1}, message_id="m-late",
                                           subscription="projects/p/subscriptions/orders"))
        fine = handler.handle({}, envelope({"n": 2}, message_id="m-fine",
                                           subscription="projects/p/subscriptions/invoices"))
    assert late.status == 200 and fine.status == 200  # the verdict itself is unchanged
    [warning] = [r.getMessage() for r in caplog.records if r.name == "relay.push"]
    assert "m-late on orders took 25.0 s" in warning and "ack deadline (20 s)" in warning
