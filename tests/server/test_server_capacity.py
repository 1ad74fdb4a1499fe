"""A streaming pull beyond the calls relay's server serves at once fails with
RESOURCE_EXHAUSTED, instead of waiting unserved (as the 129th stream of a worker did)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from google.cloud import pubsub_v1
from google.pubsub_v1 import types

from relay.server.server import PubSubServer


def test_a_stream_beyond_max_workers_is_refused_not_left_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = PubSubServer(max_workers=3).start()
    done = threading.Event()
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.address)
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = publisher.create_topic(name="projects/cap-test/topics/orders").name
        names = [subscriber.create_subscription(name=f"projects/cap-test/subscriptions/sub-{i}",
                                                topic=topic).name for i in range(4)]
        subscriber.close()

        channel = grpc.insecure_channel(server.address)
        pull = channel.stream_stream(
            "/google.pubsub.v1.Subscriber/StreamingPull",
            request_serializer=types.StreamingPullRequest.serialize,
            response_deserializer=types.StreamingPullResponse.deserialize,
        )

        def requests(name: str) -> Iterator[types.StreamingPullRequest]:
            yield types.StreamingPullRequest(subscription=name, stream_ack_deadline_seconds=10)
            done.wait(30)  # keep the stream open

        publisher.publish(topic, b"{}").result(timeout=10)  # before the workers are taken
        held = [pull(requests(name)) for name in names[:3]]  # every worker busy
        for call in held:  # each is served (holds a worker) before the extra one comes
            assert next(call).received_messages
        extra = pull(requests(names[3]))
        with pytest.raises(grpc.RpcError) as raised:
            next(extra)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert all(call.is_active() for call in held)
    finally:
        done.set()
        server.stop(grace=0)
