"""Push requests through the WSGI and ASGI apps, on the memory transport: the same
pipeline as pull (hooks, filters, ack policy, dead letters) mapped to status codes."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from relay import App, MiddlewareChain, Settings, SkipMessage, UnrecoverableError, sub
from relay.push import PushHandler, Unverified, asgi_app, wsgi_app
from relay.transports.memory import MemoryTransport

from .helpers import Hooks, call_asgi, call_wsgi, envelope

Caller = Callable[..., tuple[int, str]]


def make(subs: list[Any], **settings: Any) -> tuple[PushHandler, Hooks, MemoryTransport]:
    hooks = Hooks()
    transport = MemoryTransport()
    conf = Settings.load(environ={}, gc_project_id="relay-test", transport="memory", **settings)
    app = App(conf, transport=transport, middleware=MiddlewareChain([hooks]))
    return PushHandler(subs, verifier=Unverified(), app=app), hooks, transport


def via_wsgi(handler: PushHandler, body: bytes, **kw: Any) -> tuple[int, str]:
    return call_wsgi(wsgi_app(handler), body, **kw)


def via_asgi(handler: PushHandler, body: bytes, **kw: Any) -> tuple[int, str]:
    return call_asgi(asgi_app(handler), body, **kw)


both = pytest.mark.parametrize("call", [via_wsgi, via_asgi], ids=["wsgi", "asgi"])


@both
def test_a_handler_runs_and_the_message_is_acked_with_the_hooks(call: Caller) -> None:
    got: list[tuple[Any, dict[str, Any]]] = []

    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        got.append((data, attrs))

    handler, hooks, _ = make([orders])
    status, _ = call(handler, envelope({"id": 7}, attributes={"kind": "new"}))
    assert status == 200
    assert got == [({"id": 7}, {"kind": "new"})]
    assert hooks.seen == [
        "pre_process_message", "post_process_message_success", "post_process_message",
    ]
    handler.close()


@both
def test_a_failing_handler_answers_non_2xx_so_pubsub_redelivers(call: Caller) -> None:
    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        raise RuntimeError("database down")

    handler, hooks, _ = make([orders])
    status, body = call(handler, envelope({"id": 1}))
    assert status == 503 and body == "nack\n"
    assert "post_process_message_failure" in hooks.seen
    handler.close()


@both
def test_unrecoverable_is_acked_and_dead_lettered_as_for_pull(call: Caller) -> None:
    @sub(topic="orders", dead_letter_topic="orders-dead")
    def orders(data: Any, **attrs: Any) -> None:
        raise UnrecoverableError("bad order")

    handler, _, transport = make([orders])
    status, _ = call(handler, envelope({"id": 2}, attributes={"a": "b"}))
    assert status == 200
    [dead] = [r for r in transport.published if r.topic == "orders-dead"]
    assert dead.attributes["a"] == "b"
    assert dead.attributes["relay_dead_letter_reason"] == "UnrecoverableError: bad order"
    handler.close()


@both
def test_a_dead_letter_that_cannot_be_published_is_nacked(call: Caller) -> None:
    @sub(topic="orders", dead_letter_topic="orders-dead")
    def orders(data: Any, **attrs: Any) -> None:
        raise UnrecoverableError("bad order")

    handler, _, transport = make([orders])
    transport.fail_publishes = RuntimeError("pubsub unreachable")
    status, _ = call(handler, envelope({"id": 2}))
    assert status == 503
    handler.close()


@both
def test_unrecoverable_without_dead_letter_topic_is_acked(call: Caller) -> None:
    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        raise UnrecoverableError("bad order")

    handler, _, transport = make([orders])
    assert call(handler, envelope({"id": 2}))[0] == 200
    assert transport.published == []
    handler.close()


@both
def test_an_undecodable_payload_is_dead_lettered_not_refused(call: Caller) -> None:
    @sub(topic="orders", dead_letter_topic="orders-dead")
    def orders(data: Any, **attrs: Any) -> None:
        raise AssertionError("must not run")

    handler, _, transport = make([orders])
    assert call(handler, envelope(raw=b"\xff not json"))[0] == 200
    assert [r.data for r in transport.published] == [b"\xff not json"]
    handler.close()


@both
def test_filters_and_skip_message_ack(call: Caller) -> None:
    ran: list[Any] = []

    @sub(topic="orders", filter_by=lambda **attrs: attrs.get("kind") == "new")
    def orders(data: Any, **attrs: Any) -> None:
        ran.append(data)
        raise SkipMessage("not mine")

    handler, _, _ = make([orders])
    assert call(handler, envelope(1, attributes={"kind": "old"}))[0] == 200
    assert ran == []
    assert call(handler, envelope(2, attributes={"kind": "new"}))[0] == 200
    assert ran == [2]
    handler.close()


@both
def test_routing_by_full_or_short_name_with_sub_prefix(call: Caller) -> None:
    seen: list[str] = []

    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        seen.append("orders")

    @sub(topic="mail")
    def mail(data: Any, **attrs: Any) -> None:
        seen.append("mail")

    handler, _, _ = make([orders, mail], sub_prefix="shop")
    assert call(handler, envelope(1, subscription="projects/p/subscriptions/shop-mail"))[0] == 200
    assert call(handler, envelope(1, subscription="shop-orders"))[0] == 200
    assert seen == ["mail", "orders"]
    handler.close()


@both
def test_an_unknown_subscription_is_404_with_a_log_line(
    call: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None: ...

    handler, hooks, _ = make([orders])
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        status, body = call(handler, envelope(1, subscription="projects/p/subscriptions/nope"))
    assert status == 404 and "nope" in body
    assert any("404" in r.getMessage() and "nope" in r.getMessage() for r in caplog.records)
    assert hooks.seen == []
    handler.close()


@both
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json at all", "not JSON"),
        (b'{"hello": 1}', "push format"),
        (b'{"message": {"data": "%%%not-base64"}, "subscription": "orders"}', "base64"),
        (b'{"message": {"data": "aGk="}}', "no subscription"),
        (b'{"message": {"data": "aGk=", "attributes": {"a": 1}}, "subscription": "orders"}',
         "attributes"),
        (b'{"message": {"publishTime": "yesterday"}, "subscription": "orders"}', "publish time"),
        (b'{"message": {}, "subscription": "orders", "deliveryAttempt": "x"}', "deliveryAttempt"),
    ],
)
def test_bad_input_is_a_clear_400_and_runs_nothing(
    call: Caller, body: bytes, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        raise AssertionError("must not run")

    handler, hooks, _ = make([orders])
    with caplog.at_level(logging.WARNING, logger="relay.push"):
        status, text = call(handler, body)
    assert status == 400 and says in text
    assert any("400" in r.getMessage() for r in caplog.records)
    assert hooks.seen == []
    handler.close()


@both
def test_only_post_is_served(call: Caller) -> None:
    handler, _, _ = make([])
    assert call(handler, b"", method="GET")[0] == 405
    handler.close()


@both
def test_the_unwrapped_format_with_metadata_headers(call: Caller) -> None:
    got: list[tuple[Any, dict[str, Any]]] = []

    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        got.append((data, attrs))

    handler, _, _ = make([orders])
    headers = {
        "x-goog-pubsub-subscription-name": "projects/p/subscriptions/orders",
        "x-goog-pubsub-message-id": "42",
        "x-goog-pubsub-publish-time": "2026-12-05T10:00:00Z",
        "kind": "new",
    }
    assert call(handler, b'{"id": 3}', headers=headers)[0] == 200
    assert got == [({"id": 3}, {"kind": "new"})]
    handler.close()


@both
def test_the_unwrapped_format_routed_by_path(call: Caller) -> None:
    got: list[Any] = []

    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        got.append(data)

    handler, _, _ = make([orders])
    assert call(handler, b'{"id": 4}', path="/orders")[0] == 200
    assert got == [{"id": 4}]
    handler.close()


@both
def test_delivery_attempt_reaches_the_handler(call: Caller) -> None:
    attempts: list[int | None] = []

    @sub(topic="orders")
    def orders(data: Any, delivery_attempt: int | None = None, **attrs: Any) -> None:
        attempts.append(delivery_attempt)

    handler, _, _ = make([orders])
    assert call(handler, envelope(1, attempt=3))[0] == 200
    assert attempts == [3]
    handler.close()


def test_asgi_runs_async_handlers_on_the_loop_and_sync_ones_on_the_pool() -> None:
    where: dict[str, str] = {}

    @sub(topic="orders")
    async def orders(data: Any, **attrs: Any) -> None:
        asyncio.get_running_loop()
        where["async"] = threading.current_thread().name

    @sub(topic="mail")
    def mail(data: Any, **attrs: Any) -> None:
        where["sync"] = threading.current_thread().name

    handler, _, _ = make([orders, mail])
    assert via_asgi(handler, envelope(1, subscription="orders"))[0] == 200
    assert via_asgi(handler, envelope(1, subscription="mail"))[0] == 200
    assert where["async"] == threading.current_thread().name
    assert where["sync"].startswith("relay-push")
    handler.close()


def test_wsgi_runs_an_async_handler_to_completion() -> None:
    got: list[Any] = []

    @sub(topic="orders")
    async def orders(data: Any, **attrs: Any) -> None:
        await asyncio.sleep(0)
        got.append(data)

    handler, _, _ = make([orders])
    assert via_wsgi(handler, envelope(5))[0] == 200
    assert got == [5]
    handler.close()


def test_asgi_lifespan_closes_the_handler() -> None:
    handler, _, _ = make([])
    app = asgi_app(handler)
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0)

    async def send(event: Any) -> None:
        sent.append(event["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_verifier_is_required_and_checked() -> None:
    with pytest.raises(TypeError):
        PushHandler([], verifier=None, app=App(Settings.load(environ={})))  # type: ignore[arg-type]


def test_data_field_may_be_absent() -> None:
    got: list[Any] = []

    @sub(topic="orders")
    def orders(data: Any, **attrs: Any) -> None:
        got.append(data)

    handler, _, _ = make([orders])
    body = b'{"message": {"attributes": {"k": "v"}}, "subscription": "orders"}'
    # An empty payload is not JSON: relay's codec fails it; acked, no dead-letter topic.
    assert via_wsgi(handler, body)[0] == 200
    assert got == []
    handler.close()
