"""Publishing through both Pub/Sub transports: failures reach the hooks, in bounded time.

"Unreachable" is a fresh free loopback port with nothing listening, given to
the client library as ``PUBSUB_EMULATOR_HOST`` (so no credentials are involved
and nothing leaves the machine).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc

import relay
from relay.app import build_transport
from relay.emulator import free_port

RETRY_TIMEOUT = 1.0
#: Slack for thread scheduling on a busy 2-core machine.
SLACK = 4.0


@pytest.fixture(params=["grpc", "pubsub"])
def unreachable(request, monkeypatch, recorder) -> Iterator[relay.Publisher]:
    """A Publisher whose transport (each of the two) points at a closed port."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    settings = relay.Settings.load(
        gc_project_id="relay-tests", middleware=[recorder], publisher_retry_timeout=RETRY_TIMEOUT,
        transport=request.param,
    )
    transport = build_transport(settings)
    yield relay.Publisher(
        transport, settings=settings, middleware=relay.MiddlewareChain([recorder])
    )
    transport.close()


def _assert_unreachable_error(error: BaseException) -> None:
    # The retry deadline ran out; the last underlying error says why: google's
    # publisher wraps it in a RetryError, relay's gives the last error itself.
    cause = error.cause if isinstance(error, gexc.RetryError) else error
    assert isinstance(cause, gexc.ServiceUnavailable), repr(error)
    assert "failed to connect" in str(error).lower() or "unavailable" in str(error).lower()


@pytest.mark.parametrize("ordering_key", ["", "customer-1"], ids=["unordered", "ordered"])
def test_non_blocking_publish_failure_reaches_post_publish_failure(
    unreachable, recorder, wait_for, ordering_key
):
    started = time.monotonic()
    future = unreachable.publish("orders", {"n": 1}, ordering_key=ordering_key, blocking=False)
    assert not future.done()  # it did not block

    ((message, error, elapsed),) = wait_for(
        lambda: recorder.events("post_publish_failure"),
        timeout=RETRY_TIMEOUT + SLACK,
        what="post_publish_failure",
    )
    assert time.monotonic() - started < RETRY_TIMEOUT + SLACK
    assert elapsed < RETRY_TIMEOUT + SLACK
    assert message.topic == "orders" and message.data == {"n": 1}
    assert message.ordering_key == ordering_key
    _assert_unreachable_error(error)
    assert future.exception(timeout=1) is error
    assert recorder.events("post_publish_success") == []


def test_blocking_publish_failure_raises_publish_error(unreachable, recorder):
    started = time.monotonic()
    with pytest.raises(relay.PublishError) as raised:
        unreachable.publish("orders", {"n": 1}, blocking=True, timeout=RETRY_TIMEOUT + SLACK)
    assert time.monotonic() - started < RETRY_TIMEOUT + SLACK
    assert raised.value.topic == "orders"
    _assert_unreachable_error(raised.value.cause)
    ((_, error, _),) = recorder.events("post_publish_failure")
    assert error is raised.value.cause


def test_publish_to_a_missing_topic_fails_with_not_found(harness, recorder, unique_name):
    with pytest.raises(relay.PublishError) as raised:
        harness.publisher.publish(unique_name("nowhere"), {"n": 1}, blocking=True, timeout=10)
    assert isinstance(raised.value.cause, gexc.NotFound)
    assert len(recorder.events("post_publish_failure")) == 1


@pytest.mark.parametrize("name", ["topic", "data", "ordering_key", "retry", "timeout", "self"])
def test_attribute_names_google_reserves_fail_before_sending_on_pubsub(
    harness, recorder, unique_name, name
):
    # google-cloud-pubsub's publish(topic, data, ordering_key, retry, timeout,
    # **attrs) cannot carry attributes with those names: on TRANSPORT="pubsub"
    # relay says so up front, for blocking and non-blocking publishes alike, and
    # fires no publish hooks. (The grpc transport sends them:
    # tests/transports/test_grpc_publishing.py.)
    topic = unique_name("reserved")
    harness.transport.ensure_topic(topic)
    settings = harness.transport.settings.replace(transport="pubsub")
    transport = build_transport(settings)
    chain = harness.publisher.middleware
    publisher = relay.Publisher(transport, settings=settings, middleware=chain)
    try:
        for blocking in (True, False):
            with pytest.raises(relay.ConfigurationError) as raised:
                publisher.publish(topic, {}, attrs={name: "x"}, blocking=blocking)
            text = str(raised.value)
            assert f"{name} cannot be sent through PubSubTransport" in text
            assert 'TRANSPORT="grpc"' in text and "rename" in text
    finally:
        transport.close()
    assert recorder.events("post_publish_failure") == []
    assert recorder.events("post_publish_success") == []


def test_close_flushes_batched_publishes(make_harness, unique_name, wait_for):
    harness = make_harness()
    topic = unique_name("flushed")
    harness.transport.ensure_topic(topic)
    futures = [harness.transport.publish(topic, b"{}", {}) for _ in range(20)]
    harness.transport.close()
    assert all(f.done() and f.exception() is None for f in futures)
    harness.transport.close()  # idempotent
