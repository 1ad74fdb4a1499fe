"""``GrpcTransport``'s admin verbs (google's gapic clients on a sync channel),
beyond what the contract's provisioning tests cover."""

from __future__ import annotations

import dataclasses

import pytest

from relay.transports.base import RetryPolicy, SubscriptionSpec


def test_admin_verbs_round_trip(make_grpc_transport, unique_name, pubsub_emulator):
    transport, _ = make_grpc_transport()
    topic = unique_name("admin")
    assert transport.topic_exists(topic) is False
    assert transport.ensure_topic(topic) is True
    assert transport.topic_exists(topic) is True
    spec = SubscriptionSpec(
        name=f"{topic}-sub", topic=topic, ack_deadline=20, labels={"team": "a"},
        retry_policy=RetryPolicy(5, 60), enable_message_ordering=True,
    )
    assert transport.get_subscription(spec.name) is None
    assert transport.create_subscription(spec) is True
    assert transport.create_subscription(spec) is False
    read = transport.get_subscription(spec.name)
    assert read is not None
    assert (read.topic, read.ack_deadline, dict(read.labels), read.retry_policy) == (
        topic, 20, {"team": "a"}, RetryPolicy(5, 60)
    )
    assert read.enable_message_ordering is True
    transport.update_subscription(dataclasses.replace(spec, ack_deadline=30), ("ack_deadline",))
    assert transport.get_subscription(spec.name).ack_deadline == 30
    if pubsub_emulator.kind == "google":  # it has no IAM: the pubsub transport says the same
        with pytest.raises(NotImplementedError, match="does not implement GetIamPolicy"):
            transport.topic_iam_policy(topic)
    else:
        assert isinstance(transport.topic_iam_policy(topic), dict)
    assert transport.delete_subscription(spec.name) is True
    assert transport.delete_subscription(spec.name) is False
