"""Attribute names google-cloud-pubsub's ``publish()`` cannot carry (``topic``,
``data``, ...): refused by the Publisher on the pubsub transport only, which
declares them (``Transport.unsendable_attributes``); the memory transport and
any transport that declares nothing carry them. The grpc transport, against
relay's server: ``tests/transports/test_grpc_attribute_names.py``."""

from __future__ import annotations

import re
from concurrent.futures import Future
from typing import Any

import pytest

from relay.errors import ConfigurationError
from relay.limits import UNSENDABLE_ATTRIBUTES, validate_attributes
from relay.message import OutgoingMessage
from relay.middleware import BaseMiddleware, MiddlewareChain
from relay.publisher import Publisher
from relay.settings import Settings
from relay.transports.base import Transport
from relay.transports.memory import MemoryTransport
from relay.transports.pubsub import PubSubTransport


class Hooks(BaseMiddleware):
    def __init__(self, add: dict[str, str] | None = None) -> None:
        self.add = add or {}
        self.seen: list[tuple[str, Any]] = []

    def pre_publish(self, message: OutgoingMessage) -> None:
        self.seen.append(("pre", message))
        message.attributes.update(self.add)

    def post_publish_failure(
        self, message: OutgoingMessage, exception: BaseException, elapsed: float
    ) -> None:
        self.seen.append(("failure", exception))


class SpyPubSub(PubSubTransport):
    """The pubsub transport, but publishing anything is a test failure."""

    def publish(self, *args: Any, **kwargs: Any) -> Future[str]:
        raise AssertionError("nothing may reach google's publish()")


def settings() -> Settings:
    return Settings.load(gc_project_id="relay-test", middleware=[], environ={})


def test_the_pubsub_transport_declares_google_s_parameter_names() -> None:
    assert PubSubTransport.unsendable_attributes == UNSENDABLE_ATTRIBUTES
    assert {"topic", "data", "ordering_key", "retry", "timeout", "self"} == UNSENDABLE_ATTRIBUTES
    assert MemoryTransport.unsendable_attributes == frozenset()
    assert Transport.unsendable_attributes == frozenset()


def test_pubsub_refuses_them_naming_the_attribute_the_transport_and_the_fix() -> None:
    transport = SpyPubSub(settings())
    hooks = Hooks()
    publisher = Publisher(transport, settings=settings(), middleware=MiddlewareChain([hooks]))
    with pytest.raises(ConfigurationError) as info:
        publisher.publish("orders", {}, attrs={"topic": "x", "data": "y"}, kind="a")
    text = str(info.value)
    assert "attribute name(s) data, topic cannot be sent through PubSubTransport" in text
    assert 'TRANSPORT="grpc"' in text
    assert "kind" not in text
    assert hooks.seen == []  # refused before any hook ran
    assert publisher.outstanding == (0, 0)
    transport.close()


def test_pubsub_refuses_one_that_a_pre_publish_hook_adds() -> None:
    transport = SpyPubSub(settings())
    hooks = Hooks(add={"retry": "3"})
    publisher = Publisher(transport, settings=settings(), middleware=MiddlewareChain([hooks]))
    with pytest.raises(ConfigurationError, match="retry cannot be sent through PubSubTransport"):
        publisher.publish("orders", {})
    # pre_publish ran, so post_publish_failure did too.
    assert [kind for kind, _ in hooks.seen] == ["pre", "failure"]
    assert isinstance(hooks.seen[1][1], ConfigurationError)
    transport.close()


@pytest.mark.parametrize("how", ["attrs", "hook"])
def test_the_memory_transport_carries_them(how: str) -> None:
    transport = MemoryTransport()
    reserved = {name: f"v-{name}" for name in UNSENDABLE_ATTRIBUTES}
    hooks = Hooks(add=reserved if how == "hook" else None)
    publisher = Publisher(transport, settings=settings(), middleware=MiddlewareChain([hooks]))
    message_id = publisher.publish(
        "orders", {"id": 1}, attrs=reserved if how == "attrs" else None
    ).result(5)
    [record] = transport.published
    assert record.message_id == message_id
    assert {k: v for k, v in record.attributes.items() if k != "published_at"} == reserved


class Picky(MemoryTransport):
    """A transport of one's own that cannot send one name."""

    unsendable_attributes = frozenset({"x-forbidden"})


def test_a_transport_declares_what_it_cannot_send() -> None:
    transport = Picky()
    publisher = Publisher(transport, settings=settings())
    publisher.publish("orders", {}, topic_name="x", attrs={"topic": "t"}).result(5)
    with pytest.raises(ConfigurationError, match="x-forbidden cannot be sent through Picky"):
        publisher.publish("orders", {}, attrs={"x-forbidden": "1"})
    assert len(transport.published) == 1


def test_validate_attributes_refuses_google_s_names_unless_told_otherwise() -> None:
    # relay.contrib (the Celery bridge, tracing) validates for any transport.
    with pytest.raises(ConfigurationError, match=re.escape("name(s) topic cannot be sent")):
        validate_attributes({"topic": "x"})
    validate_attributes({"topic": "x"}, unsendable=frozenset())
