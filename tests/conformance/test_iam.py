"""IAM policies of topics and subscriptions.

The real service (https://cloud.google.com/pubsub/docs/access-control): the
Publisher and Subscriber services also serve ``google.iam.v1.IAMPolicy``;
GetIamPolicy on a topic or subscription answers its policy (a new one's has no
bindings, the project's grants are inherited, not copied), and
TestIamPermissions answers which of the asked permissions the caller holds.
relay's provisioning and verify mode read a topic's policy this way.
"""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from tests.conformance.helpers import Clients, known_difference

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]


def test_a_new_topic_and_subscription_have_an_iam_policy_without_bindings(
    clients: Clients
) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    asked = ["pubsub.topics.publish", "pubsub.topics.get"]
    if known_difference(clients.server, "google", "iam-policy"):
        with pytest.raises(gexc.MethodNotImplemented):
            clients.publisher.get_iam_policy(request={"resource": topic})
        with pytest.raises(gexc.MethodNotImplemented):
            clients.subscriber.get_iam_policy(request={"resource": sub})
        with pytest.raises(gexc.MethodNotImplemented):
            clients.publisher.test_iam_permissions(
                request={"resource": topic, "permissions": asked})
        return
    assert list(clients.publisher.get_iam_policy(request={"resource": topic}).bindings) == []
    assert list(clients.subscriber.get_iam_policy(request={"resource": sub}).bindings) == []
    held = clients.publisher.test_iam_permissions(
        request={"resource": topic, "permissions": asked})
    assert set(held.permissions) <= set(asked)
