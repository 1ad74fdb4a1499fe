"""Subscription filters.

The real service (https://cloud.google.com/pubsub/docs/subscription-message-filter):
a subscription with a filter delivers only the messages whose attributes
match it, and acknowledges the others itself; the filter language has ``=``,
``!=``, ``:`` (has the attribute), ``hasPrefix``, ``AND``, ``OR``, ``NOT``
and parentheses; a filter that does not parse is rejected by
CreateSubscription with INVALID_ARGUMENT.
"""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from tests.conformance.helpers import Clients, known_difference

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]

MESSAGES = {  # data -> attributes
    b"keep": {"kind": "keep"},
    b"drop": {"kind": "drop"},
    b"eu": {"kind": "other", "region": "eu-west1"},
    b"skipped": {"kind": "keep", "skip": "yes"},
    b"us": {"kind": "other", "region": "us-east1"},
}
RICH = '(attributes.kind = "keep" OR hasPrefix(attributes.region, "eu-")) AND NOT attributes:skip'
NOT_EQUAL = 'attributes.kind != "drop"'


def test_a_subscription_with_a_filter_gets_only_the_matching_messages(clients: Clients) -> None:
    topic = clients.topic()
    rich = clients.subscription(topic, "rich", filter=RICH)
    not_equal = clients.subscription(topic, "not-equal", filter=NOT_EQUAL)
    assert clients.subscriber.get_subscription(request={"subscription": rich}).filter == RICH
    for data, attrs in MESSAGES.items():
        clients.publish(topic, data, **attrs)

    def received(sub: str, expected: set[bytes]) -> set[bytes]:
        got = clients.pull_until(sub, lambda r: {m.message.data for m in r} >= expected)
        got += clients.pull(sub, timeout=1.0)  # anything that should not have come
        return {m.message.data for m in got}

    if known_difference(clients.server, "google", "filters"):
        assert received(rich, set(MESSAGES)) == set(MESSAGES)
        assert received(not_equal, set(MESSAGES)) == set(MESSAGES)
        return
    assert received(rich, {b"keep", b"eu"}) == {b"keep", b"eu"}
    assert received(not_equal, {b"keep", b"eu", b"skipped", b"us"}) == {
        b"keep", b"eu", b"skipped", b"us"}


@pytest.mark.parametrize("bad", ['attributes.kind = "a" AND', "attributes.kind == 'a'",
                                 'hasPrefix(attributes.kind)'])
def test_a_filter_that_does_not_parse_is_rejected_at_create(clients: Clients, bad: str) -> None:
    topic = clients.topic()
    path = clients.subscriber.subscription_path(clients.server.project, clients.name("bad"))
    request = {"name": path, "topic": topic, "filter": bad}
    if known_difference(clients.server, "google", "invalid-filter"):
        created = clients.subscriber.create_subscription(request=request)
        assert created.filter == bad
        return
    with pytest.raises(gexc.InvalidArgument):
        clients.subscriber.create_subscription(request=request)
    with pytest.raises(gexc.NotFound):
        clients.subscriber.get_subscription(request={"subscription": path})
