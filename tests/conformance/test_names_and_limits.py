"""Resource names, existence and message limits.

The real service (https://cloud.google.com/pubsub/docs/create-topic#resource_names,
https://cloud.google.com/pubsub/quotas#resource_limits): a topic or
subscription id is 3 to 255 characters, starts with a letter, holds letters,
digits and ``-_.~+%``, and does not start with ``goog`` (INVALID_ARGUMENT);
Publish to a topic that does not exist answers NOT_FOUND; creating what exists
answers ALREADY_EXISTS; a message holds at most 100 attributes.
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
