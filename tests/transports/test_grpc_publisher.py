"""``GrpcTransport``'s publisher: batches, ordering keys, failures, and the
attribute names google's ``publish()`` cannot carry."""

from __future__ import annotations

import threading
import time

import pytest
from google.api_core import exceptions as gexc

from relay.provisioning import ensure_subscription
from relay.transports.base import FlowControl, SubscriptionSpec
from relay.transports.grpc.publisher import OrderingKeyError
from tests.transports.test_contract import Inbox


def _topic_and_sub(transport, unique_name, **spec_fields):
    topic = unique_name("grpc-pub")
    transport.ensure_topic(topic)
    spec = SubscriptionSpec(name=f"{topic}-sub", topic=topic, **spec_fields)
    ensure_subscription(transport, spec)
    return spec


def test_messages_are_sent_in_batches_by_count(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport(
        publisher_batch_max_messages=10, publisher_batch_max_latency=5
    )
    topic = unique_name("batch")
    transport.ensure_topic(topic)
    publisher = transport.core().publisher
    started = time.monotonic()
    futures = [transport.publish(topic, b'{"i": %d}' % i, {}) for i in range(50)]
    ids = [f.result(10) for f in futures]
    assert time.monotonic() - started < 4, "full batches wait for no timer"
    assert len(set(ids)) == 50
    assert publisher.calls == 5


def test_a_partial_batch_goes_after_the_latency(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport(publisher_batch_max_latency=0.3)
    topic = unique_name("latency")
    transport.ensure_topic(topic)
    publisher = transport.core().publisher
    first = transport.publish(topic, b"{}", {})
    second = transport.publish(topic, b"{}", {})
    time.sleep(0.1)
    assert not first.done() and not second.done()
    assert first.result(5) and second.result(5)
    assert publisher.calls == 1


def test_a_batch_is_bounded_by_bytes(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport(
        publisher_batch_max_bytes=5000, publisher_batch_max_latency=5
    )
    topic = unique_name("bytes")
    transport.ensure_topic(topic)
    publisher = transport.core().publisher
    futures = [transport.publish(topic, b"x" * 2000, {}) for _ in range(6)]
    for future in futures:
        future.result(10)
    assert publisher.calls == 3  # two 2000-byte messages per batch


def test_ordered_messages_arrive_in_publish_order(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport(publisher_batch_max_messages=3)
    spec = _topic_and_sub(transport, unique_name, enable_message_ordering=True)
    futures = [
        transport.publish(spec.topic, b'{"i": %d}' % i, {}, ordering_key="k") for i in range(30)
    ]
    sent = [f.result(10) for f in futures]
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl())
    acked = 0
    while acked < 30:
        for message in inbox.wait_for(acked + 1)[acked:]:
            message.ack()
            acked += 1
    assert inbox.ids() == sent
    stream.close(timeout=10)


def test_a_failed_ordered_batch_fails_those_queued_behind_then_resumes(
    make_grpc_transport, unique_name
):
    transport, _ = make_grpc_transport(publisher_batch_max_messages=1)
    missing = unique_name("missing")  # NOT_FOUND is not retried
    publisher = transport.core().publisher
    # Hold the transport's loop while publishing, so the four one-message batches are
    # all committed before the first is sent: three are queued behind it, whatever the
    # machine's speed (without the gate the first could fail before the second is queued).
    gate = threading.Event()
    publisher.loop.call_soon_threadsafe(gate.wait, 10)
    futures = [transport.publish(missing, b"{}", {}, ordering_key="k") for _ in range(4)]
    gate.set()
    with pytest.raises(gexc.NotFound):
        futures[0].result(10)
    for future in futures[1:]:
        with pytest.raises(OrderingKeyError, match="not sent: an earlier message"):
            future.result(10)
    transport.ensure_topic(missing)
    assert transport.publish(missing, b"{}", {}, ordering_key="k").result(10)


def test_unordered_batches_of_a_topic_go_concurrently(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport(publisher_batch_max_messages=1)
    topic = unique_name("concurrent")
    transport.ensure_topic(topic)
    futures = [transport.publish(topic, b"{}", {}) for _ in range(20)]
    assert len({f.result(10) for f in futures}) == 20


def test_attribute_names_google_cannot_send_are_sendable(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport()
    spec = _topic_and_sub(transport, unique_name)
    reserved = {
        "topic": "t", "data": "d", "ordering_key": "o", "retry": "r", "timeout": "x",
        "self": "s",
    }
    message_id = transport.publish(spec.topic, b"{}", reserved).result(10)
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl())
    (message,) = inbox.wait_for(1)
    assert message.message_id == message_id
    assert dict(message.attributes) == reserved
    assert message.ordering_key == ""
    message.ack()
    stream.close(timeout=10)


def test_the_hand_written_encoding_is_protobufs():
    from google.pubsub_v1 import types as gtypes

    from relay.transports.grpc.publisher import encode_message

    attrs = {"kind": "créé", "☃": "x" * 300, "": ""}
    data = b"\x00\xff" * 100
    entry = encode_message(data, attrs, "key-é")
    request = gtypes.PublishRequest.pb().FromString(b"\x0a\x01t" + entry + entry)
    assert request.topic == "t" and len(request.messages) == 2
    message = request.messages[1]
    assert (message.data, dict(message.attributes), message.ordering_key) == (
        data, attrs, "key-é"
    )
    assert gtypes.PublishRequest.pb().FromString(b"\x0a\x01t" + encode_message(b"", {}, "")).messages[0] == gtypes.PubsubMessage.pb()()  # noqa: E501


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 3_000_000])
def test_the_encoding_round_trips_at_every_length_boundary(size: int):
    import random

    from google.pubsub_v1 import types as gtypes

    from relay.transports.grpc import publisher as module

    rnd = random.Random(size)
    data = rnd.randbytes(size)
    attrs = {"published_at": str(rnd.random()), "k" * 100: "v" * (size % 2000), "é": ""}
    key = "o" * (size % 1024)
    for _ in range(2):  # the second time from the attribute cache
        request = gtypes.PublishRequest.pb().FromString(
            b"\x0a\x01t" + module.encode_message(data, attrs, key)
        )
        message = request.messages[0]
        assert (message.data, dict(message.attributes), message.ordering_key) == (
            data, attrs, key
        )
    assert ("published_at", attrs["published_at"]) not in module._ATTRIBUTE_BYTES


def test_the_attribute_cache_stays_bounded_when_values_never_repeat():
    from relay.transports.grpc import publisher as module

    for i in range(3 * module._ATTRIBUTE_CACHE_SIZE):
        module.encode_message(b"{}", {"order": str(i)}, "")
        assert len(module._ATTRIBUTE_BYTES) <= module._ATTRIBUTE_CACHE_SIZE


def test_a_response_with_fewer_ids_than_messages_fails_the_rest_not_leaves_them_waiting():
    """Pub/Sub answers one id per message; if an answer ever carries fewer, the
    futures without one fail with an error saying so instead of waiting forever."""
    import asyncio
    from types import SimpleNamespace

    from google.pubsub_v1 import types as gtypes

    from relay.errors import TransportError
    from relay.transports.grpc.publisher import Publisher

    class ShortChannel:  # answers one id fewer than it was sent messages
        def unary_unary(self, *args, **kwargs):
            async def call(request, timeout, metadata):
                sent = len(gtypes.PublishRequest.pb().FromString(request).messages)
                return gtypes.PublishResponse.pb()(message_ids=[f"id-{i}" for i in range(sent - 1)])

            return call

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        settings = SimpleNamespace(publisher_retry_timeout=5, publisher_batch_max_latency=0.01)
        publisher = Publisher(loop, ShortChannel(), settings)
        futures = [publisher.publish("projects/p/topics/t", b"{}", {}, "") for _ in range(3)]
        assert [f.result(5) for f in futures[:2]] == ["id-0", "id-1"]
        with pytest.raises(TransportError, match="confirmed 2 of the 3 messages"):
            futures[2].result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
