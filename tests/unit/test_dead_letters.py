"""Dead-letter policies: declaration, provisioning, Pub/Sub-style forwarding and
relay's own forwarding of undecodable payloads (memory transport)."""

from __future__ import annotations

from typing import Any

import pytest

from relay import (
    Action,
    ConfigurationError,
    DeadLetterPolicy,
    MiddlewareChain,
    RetryPolicy,
    Worker,
    sub,
)
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, settings, wait_for


def noop(data: Any, **attrs: Any) -> None: ...


def test_dead_letter_policy_validates_attempts_and_names() -> None:
    assert DeadLetterPolicy("orders-dead").max_delivery_attempts == 5
    for bad in (4, 101, 0, True, 5.5):
        with pytest.raises(ConfigurationError, match=r"max_delivery_attempts=.*5 to 100"):
            DeadLetterPolicy("orders-dead", bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="goog"):
        DeadLetterPolicy("goog-dead")
    with pytest.raises(ConfigurationError, match="3 to 255"):
        sub(topic="orders", dead_letter_topic="dl")(noop)


def test_max_delivery_attempts_is_checked_at_declaration() -> None:
    with pytest.raises(ConfigurationError, match="5 to 100"):
        sub(topic="orders", dead_letter_topic="orders-dead", max_delivery_attempts=200)(noop)
    with pytest.raises(ConfigurationError, match="dead-lettering off"):
        sub(topic="orders", dead_letter_topic="", max_delivery_attempts=10)(noop)


def test_max_delivery_attempts_without_any_dead_letter_topic_fails_on_resolve() -> None:
    s = sub(topic="orders", max_delivery_attempts=10)(noop)
    with pytest.raises(ConfigurationError, match="needs a dead-letter topic"):
        s.resolve(settings())
    resolved = s.resolve(settings(dead_letter_topic="{topic}-dead"))
    assert resolved.dead_letter == DeadLetterPolicy("orders-dead", 10)


def test_global_template_prefix_and_opt_out() -> None:
    conf = settings(
        dead_letter_topic="{topic}-dead-letter", topic_prefix="feat-", max_delivery_attempts=7,
        dead_letter_keep=False,
    )
    s = sub(topic="orders")(noop).resolve(conf)
    assert s.dead_letter == DeadLetterPolicy("feat-orders-dead-letter", 7, keep=False)
    by_sub = sub(topic="orders", suffix="mail")(noop).resolve(
        settings(dead_letter_topic="{subscription}-dlq")
    )
    assert by_sub.dead_letter is not None and by_sub.dead_letter.topic == "orders-mail-dlq"
    opted_out = sub(topic="orders", dead_letter_topic="")(noop).resolve(conf)
    assert opted_out.dead_letter is None
    own = sub(topic="orders", dead_letter_topic="shared-dead", max_delivery_attempts=20)(noop)
    assert own.resolve(conf).dead_letter == DeadLetterPolicy("feat-shared-dead", 20, keep=False)


def test_bad_template_and_self_loop_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="bad placeholder"):
        sub(topic="orders")(noop).resolve(settings(dead_letter_topic="{queue}-dead"))
    with pytest.raises(ConfigurationError, match="come straight back"):
        sub(topic="orders", dead_letter_topic="orders")(noop).resolve(settings())


def test_provisioning_creates_the_dead_letter_topic_and_a_keeper_subscription() -> None:
    s = sub(topic="orders", dead_letter_topic="orders-dead", max_delivery_attempts=6)(noop)
    transport = MemoryTransport()
    Worker([s], settings=settings(), transport=transport).setup()
    assert {"orders", "orders-dead"} <= set(transport.topics)
    spec = transport.get_subscription("orders")
    assert spec is not None
    assert (spec.dead_letter_topic, spec.max_delivery_attempts) == ("orders-dead", 6)
    keeper = transport.get_subscription("orders-dead")
    assert keeper is not None and keeper.topic == "orders-dead"


def test_keep_false_creates_no_keeper_subscription() -> None:
    s = sub(topic="orders", dead_letter_topic="orders-dead")(noop)
    transport = MemoryTransport()
    Worker([s], settings=settings(dead_letter_keep=False), transport=transport).setup()
    assert "orders-dead" in transport.topics
    assert transport.get_subscription("orders-dead") is None


def test_a_message_that_always_fails_is_dead_lettered_after_max_attempts() -> None:
    attempts: list[int] = []

    @sub(topic="orders", dead_letter_topic="orders-dead", max_delivery_attempts=5)
    def poison(data: Any, delivery_attempt: int | None = None, **attrs: Any) -> None:
        attempts.append(delivery_attempt or 0)
        raise RuntimeError("always")

    transport = MemoryTransport()
    with Worker([poison], settings=settings(), transport=transport, middleware=MiddlewareChain()):
        transport.publish("orders", b'{"id": 1}', {"kind": "bad"}).result(1)
        wait_for(lambda: transport.stats("orders-dead")["pending"] == 1)
    assert attempts == [1, 2, 3, 4, 5]
    [dead] = [r for r in transport.published if r.topic == "orders-dead"]
    assert dead.data == b'{"id": 1}' and dead.attributes["kind"] == "bad"
    assert dead.attributes["CloudPubSubDeadLetterSourceSubscription"] == "orders"
    assert dead.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert transport.stats("orders")["dead_lettered"] == 1


def test_an_undecodable_payload_goes_to_the_dead_letter_topic_with_the_reason() -> None:
    rec = Recorder()

    @sub(topic="orders", dead_letter_topic="orders-dead")
    def handle(data: Any, **attrs: Any) -> None:
        raise AssertionError("never called")

    transport = MemoryTransport()
    with Worker([handle], settings=settings(), transport=transport,
                middleware=MiddlewareChain([rec])):
        transport.publish("orders", b"\xff not json", {"kind": "x"}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    [dead] = [r for r in transport.published if r.topic == "orders-dead"]
    assert dead.data == b"\xff not json"
    assert dead.attributes["kind"] == "x"
    assert dead.attributes["relay_dead_letter_subscription"] == "orders"
    assert dead.attributes["relay_dead_letter_reason"].startswith("DecodeError")
    [outcome] = rec.hooks("post_process_message_failure")
    assert outcome.action is Action.DEAD_LETTER
    assert transport.stats("orders")["nacked"] == 0


def test_undecodable_payload_is_nacked_if_the_dead_letter_publish_fails() -> None:
    @sub(topic="orders", dead_letter_topic="orders-dead")
    def handle(data: Any, **attrs: Any) -> None: ...

    transport = MemoryTransport(redelivery_delay=60)
    with Worker([handle], settings=settings(), transport=transport, middleware=MiddlewareChain()):
        transport.publish("orders", b"not json", {}).result(1)
        transport.fail_publishes = ConnectionError("dead-letter topic unreachable")
        wait_for(lambda: transport.stats("orders")["nacked"] == 1)
    assert transport.stats("orders")["acked"] == 0


def test_without_a_dead_letter_topic_an_undecodable_payload_is_acked_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @sub(topic="orders")
    def handle(data: Any, **attrs: Any) -> None: ...

    transport = MemoryTransport()
    with Worker([handle], settings=settings(), transport=transport, middleware=MiddlewareChain()):
        transport.publish("orders", b"not json", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert "acked and dropped (no dead-letter topic)" in caplog.text
    assert [r.topic for r in transport.published] == ["orders"]


def test_handlers_can_ask_for_the_delivery_attempt() -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []

    @sub(topic="orders", retry_policy=RetryPolicy(1, 1))
    def handle(data: Any, *, delivery_attempt: int, **attrs: Any) -> None:
        seen.append((delivery_attempt, attrs))
        if delivery_attempt < 3:
            raise RuntimeError("not yet")

    transport = MemoryTransport()
    with Worker([handle], settings=settings(), transport=transport, middleware=MiddlewareChain()):
        transport.publish("orders", b"{}", {"kind": "a"}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert seen == [(1, {"kind": "a"}), (2, {"kind": "a"}), (3, {"kind": "a"})]
    # Handlers that do not name the parameter do not get it.
    assert handle.wants_attempt
    assert not sub(topic="orders")(noop).wants_attempt
