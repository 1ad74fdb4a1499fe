import threading
import time
from typing import Any

import orjson
import pytest

import relay
from relay import ConfigurationError, MiddlewareChain, Publisher, PublishError, Settings
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, StalledTransport, wait_for


def make(
    transport: Any = None, **settings: Any
) -> tuple[Publisher, Recorder, Any]:
    transport = transport or MemoryTransport()
    rec = Recorder()
    s = Settings.load(environ={}, gc_project_id="relay-test", **settings)
    return Publisher(transport, settings=s, middleware=MiddlewareChain([rec])), rec, transport


def test_publish_encodes_adds_published_at_and_fires_hooks() -> None:
    pub, rec, transport = make()
    before = time.time()
    future = pub.publish("orders", {"id": 1}, kind="new")
    assert future.result(1) == "1"
    record = transport.published[0]
    assert record.topic == "orders"
    assert orjson.loads(record.data) == {"id": 1}
    assert record.attributes["kind"] == "new"
    assert before <= float(record.attributes["published_at"]) <= time.time()
    wait_for(lambda: rec.hooks("post_publish_success"))
    [message] = rec.hooks("pre_publish")
    assert message.topic == "orders" and message.data == {"id": 1}
    assert rec.hooks("post_publish_success")[0].message_id == "1"
    assert rec.hooks("post_publish_failure") == []


def test_attrs_mapping_is_the_escape_hatch_for_reserved_names() -> None:
    pub, _, transport = make()
    pub.publish(
        "orders", {}, attrs={"blocking": "yes", "raise_exception": "no"}, other="y"
    ).result(1)
    attrs = transport.published[0].attributes
    assert attrs["blocking"] == "yes" and attrs["raise_exception"] == "no"
    assert attrs["other"] == "y"
    assert {"timeout", "blocking", "ordering_key", "attrs", "topic"} <= relay.RESERVED_NAMES


def test_explicit_published_at_is_kept() -> None:
    pub, _, transport = make()
    pub.publish("orders", {}, published_at="123.0").result(1)
    assert transport.published[0].attributes["published_at"] == "123.0"


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda p: p.publish("ab", {}), ConfigurationError, "invalid topic name 'ab'"),
        (lambda p: p.publish("orders", {}, n=1), ConfigurationError, "attribute 'n' has value 1"),
        (lambda p: p.publish("orders", object()), TypeError, "relay cannot encode object"),
        (
            lambda p: p.publish("orders", "x" * (10 * 1024 * 1024)),
            ConfigurationError,
            "Pub/Sub's limit is 10485760 bytes",
        ),
    ],
)
def test_bad_input_is_rejected_before_anything_is_sent(
    call: Any, error: type, fragment: str
) -> None:
    pub, rec, transport = make()
    with pytest.raises(error) as info:
        call(pub)
    assert fragment in str(info.value)
    assert transport.published == []
    assert rec.hooks("pre_publish") == []


def test_topic_prefix_applies_to_publish() -> None:
    pub, _, transport = make(topic_prefix="feature-1-")
    pub.publish("orders", {}).result(1)
    assert transport.published[0].topic == "feature-1-orders"


def test_non_blocking_failure_fires_failure_hook_for_any_error() -> None:
    transport = MemoryTransport()
    transport.fail_publishes = PermissionError("denied")
    pub, rec, _ = make(transport)
    future = pub.publish("orders", {"id": 1})
    assert isinstance(future.exception(1), PermissionError)
    [(message, exc)] = wait_for(lambda: rec.hooks("post_publish_failure"))
    assert isinstance(exc, PermissionError) and message.topic == "orders"
    assert rec.hooks("post_publish_success") == []


def test_blocking_failure_raises_publish_error_with_cause() -> None:
    transport = MemoryTransport()
    transport.fail_publishes = ConnectionError("unreachable")
    pub, rec, _ = make(transport)
    with pytest.raises(PublishError) as info:
        pub.publish("orders", {}, blocking=True)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "orders" in str(info.value)
    assert len(rec.hooks("post_publish_failure")) == 1
    # raise_exception=False: the failed future comes back instead
    future = pub.publish("orders", {}, blocking=True, raise_exception=False)
    assert isinstance(future.exception(), ConnectionError)


def test_blocking_timeout_fires_failure_once_and_ignores_late_success() -> None:
    transport = StalledTransport()
    pub, rec, _ = make(transport)
    with pytest.raises(PublishError) as info:
        pub.publish("orders", {}, blocking=True, timeout=0.05)
    assert isinstance(info.value.__cause__, TimeoutError)
    transport.waiting[0].set_result("late-id")
    assert len(rec.hooks("post_publish_failure")) == 1
    assert rec.hooks("post_publish_success") == []


def test_publisher_blocking_setting_is_the_default() -> None:
    transport = StalledTransport()
    pub, _, _ = make(transport, publisher_blocking=True, publisher_timeout=0.05)
    with pytest.raises(PublishError):
        pub.publish("orders", {})
    done = threading.Event()
    fut = pub.publish("orders", {}, blocking=False)
    fut.add_done_callback(lambda f: done.set())
    assert not done.is_set()


def test_failure_without_middleware_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    transport = MemoryTransport()
    transport.fail_publishes = ConnectionError("unreachable")
    pub = Publisher(transport, settings=Settings.load(environ={}), middleware=MiddlewareChain())
    pub.publish("orders", {})
    assert "publishing to orders failed: ConnectionError: unreachable" in caplog.text


def test_process_wide_publisher_is_swappable_and_resettable() -> None:
    from relay.testing import memory_app

    with memory_app() as env:
        first = relay.get_publisher()
        assert first is relay.get_publisher()
        relay.publish("orders", {"n": 1})
        assert env.published_data("orders") == [{"n": 1}]
        replacement, _, other = make()
        relay.set_publisher(replacement)
        relay.publish("orders", {"n": 2})
        assert [orjson.loads(r.data) for r in other.published] == [{"n": 2}]
        relay.set_publisher(None)
        assert relay.get_publisher() is not replacement
