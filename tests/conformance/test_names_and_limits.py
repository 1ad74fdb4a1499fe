"""Resource names, existence and message limits.

The real service (https://cloud.google.com/pubsub/docs/create-topic#resource_names,
https://cloud.google.com/pubsub/quotas#resource_limits): a topic or
subscription id is 3 to 255 characters, starts with a letter, holds letters,
digits and ``-_.~+%``, and does not start with ``goog`` (INVALID_ARGUMENT);
Publish to a topic that does not exist answers NOT_FOUND; creating what exists
answers ALREADY_EXISTS; a message holds at most 100 attributes and an
ordering key at most 1,024 bytes; a Publish request holds at most 1,000
messages (INVALID_ARGUMENT beyond). ModifyAckDeadline takes 0 to 600 seconds
(https://cloud.google.com/pubsub/docs/lease-management).
"""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from tests.conformance.helpers import Clients, known_difference

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]


@pytest.mark.parametrize("bad", ["ab", "1starts-with-a-digit", "goog-reserved", "has space",
                                 "x" * 256])
def test_an_invalid_name_is_rejected(clients: Clients, bad: str) -> None:
    project = clients.server.project
    with pytest.raises(gexc.InvalidArgument):
        clients.publisher.create_topic(request={"name": f"projects/{project}/topics/{bad}"})
    topic = clients.topic()
    with pytest.raises(gexc.InvalidArgument):
        clients.subscriber.create_subscription(request={
            "name": f"projects/{project}/subscriptions/{bad}", "topic": topic})


def test_missing_resources_are_not_found(clients: Clients) -> None:
    missing = clients.publisher.topic_path(clients.server.project, clients.name("missing"))
    with pytest.raises(gexc.NotFound):
        clients.publisher.publish(missing, b"nobody").result(timeout=30)
    with pytest.raises(gexc.NotFound):
        clients.publisher.get_topic(request={"topic": missing})
    sub = clients.subscriber.subscription_path(clients.server.project, clients.name("orphan"))
    with pytest.raises(gexc.NotFound):
        clients.subscriber.create_subscription(request={"name": sub, "topic": missing})
    with pytest.raises(gexc.NotFound):
        clients.subscriber.pull(request={"subscription": sub, "max_messages": 1}, timeout=5)


def test_creating_what_exists_is_already_exists(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    with pytest.raises(gexc.AlreadyExists):
        clients.publisher.create_topic(request={"name": topic})
    with pytest.raises(gexc.AlreadyExists):
        clients.subscriber.create_subscription(request={"name": sub, "topic": topic})


def test_a_message_holds_at_most_100_attributes(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    hundred = {f"a{n}": "v" for n in range(100)}
    clients.publish(topic, b"100", **hundred)
    got = clients.pull_until(sub, lambda r: len(r) >= 1)
    assert len(got[0].message.attributes) == 100

    too_many = clients.publisher.publish(topic, b"101", **hundred, extra="v")
    if known_difference(clients.server, "google", "attribute-limit"):
        assert too_many.result(timeout=30)
        return
    with pytest.raises(gexc.InvalidArgument):
        too_many.result(timeout=30)


@pytest.mark.filterwarnings('ignore:The "api" property:DeprecationWarning')
def test_a_publish_request_holds_at_most_1000_messages(clients: Clients) -> None:
    topic = clients.topic()
    api = clients.publisher.api  # google's deprecated way to the raw Publish call
    assert len(api.publish(topic=topic, messages=[{"data": b"x"}] * 1000).message_ids) == 1000
    with pytest.raises(gexc.InvalidArgument):
        api.publish(topic=topic, messages=[{"data": b"x"}] * 1001)


@pytest.mark.filterwarnings('ignore:The "api" property:DeprecationWarning')
def test_an_ordering_key_holds_at_most_1024_bytes(clients: Clients) -> None:
    topic = clients.topic()
    api = clients.publisher.api
    api.publish(topic=topic, messages=[{"data": b"x", "ordering_key": "k" * 1024}])
    too_long = [{"data": b"x", "ordering_key": "k" * 1025}]
    if known_difference(clients.server, "google", "ordering-key-limit"):
        assert len(api.publish(topic=topic, messages=too_long).message_ids) == 1
        return
    with pytest.raises(gexc.InvalidArgument):
        api.publish(topic=topic, messages=too_long)


def test_modify_ack_deadline_takes_0_to_600_seconds(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    clients.publish(topic, b"leased")
    (received,) = clients.pull_until(sub, lambda r: len(r) >= 1)

    def modack(seconds: int) -> None:
        clients.subscriber.modify_ack_deadline(request={
            "subscription": sub, "ack_ids": [received.ack_id], "ack_deadline_seconds": seconds})

    modack(600)
    with pytest.raises(gexc.InvalidArgument):
        modack(-1)
    if known_difference(clients.server, "google", "modack-limit"):
        modack(601)
        return
    with pytest.raises(gexc.InvalidArgument):
        modack(601)
