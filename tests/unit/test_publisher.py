import threading
import time
from typing import Any

import orjson
import pytest

import relay
from relay import ConfigurationError, MiddlewareChain, Publisher, PublishError, Settings
from relay.codec import EncodeError
from relay.message import OutgoingMessage
from relay.middleware import BaseMiddleware
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
            lambda p: p.publish("orders", {"readings": [1.5, float("nan")]}),
            EncodeError,
            "relay cannot encode float('nan') at data['readings'][1]: JSON has no NaN",
        ),
        (
            lambda p: p.publish("orders", {"blob": b"\xff"}),
            EncodeError,
            "relay cannot encode bytes at data['blob']: they are not UTF-8",
        ),
        (
            lambda p: p.publish("orders", [{"id": 2**64}]),
            EncodeError,
            "relay cannot encode the integer 18446744073709551616 at data[0]['id']",
        ),
        (
            lambda p: p.publish("orders", "x" * (10 * 1024 * 1024)),
            ConfigurationError,
            "Pub/Sub's limit is 10485760 bytes",
        ),
    ],
    ids=["topic", "attribute", "unknown-type", "nan", "non-utf8-bytes", "int-over-64-bits", "size"],
)
def test_bad_input_is_rejected_before_anything_is_sent(
    call: Any, error: type, fragment: str
) -> None:
    pub, rec, transport = make()
    with pytest.raises(error) as info:
        call(pub)
    assert fragment in str(info.value)
    assert transport.published == []
    # Refused before the hooks, like every check here: no pre hook, so no post hook.
    assert rec.hooks("pre_publish") == []
    assert rec.hooks("post_publish_failure") == []
    assert pub.outstanding == (0, 0)


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


def test_nan_and_infinity_are_refused_by_relay_publish_and_nothing_is_sent() -> None:
    from relay.testing import memory_app

    with memory_app() as env:
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(EncodeError, match=r"at data\['sensor'\]\['readings'\]\[2\]"):
                relay.publish("metrics", {"sensor": {"readings": [0.5, 1.5, bad]}})
        assert env.published == []


def test_none_and_the_text_null_are_published_unchanged() -> None:
    pub, _, transport = make()
    data = {"note": None, "text": "null", "items": [None, "null", {"null": None}]}
    pub.publish("orders", data).result(1)
    assert transport.published[0].data == (
        b'{"note":null,"text":"null","items":[null,"null",{"null":null}]}'
    )
    assert orjson.loads(transport.published[0].data) == data


def attributes(count: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(count)}


def test_99_attributes_of_your_own_plus_published_at_is_the_limit() -> None:
    pub, _, transport = make()
    pub.publish("orders", {}, attrs=attributes(99)).result(1)
    assert len(transport.published[0].attributes) == 100
    # with your own published_at, relay adds nothing: 100 of yours fit
    pub.publish("orders", {}, attrs=attributes(99), published_at="1.0").result(1)
    assert len(transport.published[1].attributes) == 100


@pytest.mark.parametrize(("own", "remove"), [(100, 1), (101, 2)])
def test_too_many_attributes_counts_yours_and_says_relay_adds_published_at(
    own: int, remove: int
) -> None:
    pub, rec, transport = make()
    with pytest.raises(ConfigurationError) as info:
        pub.publish("orders", {}, attrs=attributes(own))
    assert str(info.value) == (
        f"a message has {own + 1} attributes: {own} of yours and 1 added for you "
        "(published_at by relay); Pub/Sub allows at most 100 in all, so at most 99 of "
        f"yours: remove {remove} of yours, or put their values in the data"
    )
    assert transport.published == [] and rec.hooks("pre_publish") == []


class AddsTracing(BaseMiddleware):
    def pre_publish(self, message: OutgoingMessage) -> None:
        message.attributes["trace_id"] = "t"
        message.attributes["span_id"] = "s"


def test_too_many_attributes_after_middleware_names_what_middleware_added() -> None:
    transport = MemoryTransport()
    rec = Recorder()
    pub = Publisher(
        transport,
        settings=Settings.load(environ={}, gc_project_id="relay-test"),
        middleware=MiddlewareChain([rec, AddsTracing()]),
    )
    pub.publish("orders", {}, attrs=attributes(97)).result(1)  # 97 + 1 + 2 = 100
    with pytest.raises(ConfigurationError) as info:
        pub.publish("orders", {}, attrs=attributes(98))
    assert str(info.value) == (
        "a message has 101 attributes: 98 of yours and 3 added for you (published_at by "
        "relay; trace_id, span_id by pre_publish middleware); Pub/Sub allows at most 100 in "
        "all, so at most 97 of yours: remove 1 of yours, or put their values in the data"
    )
    assert len(transport.published) == 1
    [(_, error)] = rec.hooks("post_publish_failure")
    assert error is info.value
