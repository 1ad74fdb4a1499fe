"""Topics, subscriptions, IAM and the limits, through google's unmodified clients."""

from __future__ import annotations

import datetime
import threading

import pytest
from google.api_core import exceptions as gexc
from google.protobuf import field_mask_pb2
from google.pubsub_v1 import SchemaServiceClient

from relay.server.state import DELETED_TOPIC
from relay.settings import Settings
from relay.transports.base import FlowControl, SubscriptionSpec
from relay.transports.pubsub import PubSubTransport
from tests.server.conftest import PROJECT, Clients

# google's deprecated ``api`` property is its one way to the raw Publish call.
pytestmark = pytest.mark.filterwarnings('ignore:The "api" property:DeprecationWarning')


def test_topics_are_created_read_listed_and_deleted(clients: Clients) -> None:
    topic = clients.topic(labels={"team": "a"})
    assert clients.publisher.get_topic(topic=topic).labels == {"team": "a"}
    listed = [t.name for t in clients.publisher.list_topics(project=f"projects/{PROJECT}")]
    assert topic in listed
    with pytest.raises(gexc.AlreadyExists, match="Resource already exists"):
        clients.publisher.create_topic(name=topic)
    clients.publisher.delete_topic(topic=topic)
    short = topic.rsplit("/", 1)[1]
    with pytest.raises(gexc.NotFound, match=rf"Resource not found \(resource={short}\)"):
        clients.publisher.get_topic(topic=topic)


def test_update_topic_changes_the_masked_fields(clients: Clients) -> None:
    topic = clients.topic(labels={"a": "1"})
    updated = clients.publisher.update_topic(
        request={"topic": {"name": topic, "labels": {"b": "2"}},
                 "update_mask": field_mask_pb2.FieldMask(paths=["labels"])}
    )
    assert updated.labels == {"b": "2"}
    assert clients.publisher.get_topic(topic=topic).labels == {"b": "2"}


@pytest.mark.parametrize("short", ["ab", "1abc", "goog-topic", "has space", "x" * 256])
def test_bad_names_are_invalid_arguments(clients: Clients, short: str) -> None:
    with pytest.raises(gexc.InvalidArgument, match="Invalid resource name"):
        clients.publisher.create_topic(name=f"projects/{PROJECT}/topics/{short}")


def test_good_names_use_the_whole_alphabet(clients: Clients) -> None:
    clients.publisher.create_topic(name=f"projects/{PROJECT}/topics/Ab-_.~+%9")


def test_subscriptions_are_listed_updated_and_outlive_their_topic(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    got = clients.subscriber.get_subscription(subscription=sub)
    assert (got.topic, got.ack_deadline_seconds) == (topic, 10)
    assert list(clients.publisher.list_topic_subscriptions(topic=topic)) == [sub]
    assert sub in [s.name for s in clients.subscriber.list_subscriptions(
        project=f"projects/{PROJECT}")]
    updated = clients.subscriber.update_subscription(
        request={
            "subscription": {"name": sub, "ack_deadline_seconds": 42, "labels": {"x": "y"},
                             "retry_policy": {"minimum_backoff": datetime.timedelta(seconds=1)}},
            "update_mask": field_mask_pb2.FieldMask(
                paths=["ack_deadline_seconds", "labels", "retry_policy"]),
        }
    )
    assert (updated.ack_deadline_seconds, dict(updated.labels)) == (42, {"x": "y"})
    assert updated.retry_policy.minimum_backoff == datetime.timedelta(seconds=1)
    with pytest.raises(gexc.InvalidArgument, match="filter"):
        clients.subscriber.update_subscription(
            request={"subscription": {"name": sub, "filter": "attributes:x"},
                     "update_mask": field_mask_pb2.FieldMask(paths=["filter"])}
        )
    clients.publisher.delete_topic(topic=topic)
    assert clients.subscriber.get_subscription(subscription=sub).topic == DELETED_TOPIC
    clients.subscriber.delete_subscription(subscription=sub)
    with pytest.raises(gexc.NotFound):
        clients.subscriber.get_subscription(subscription=sub)


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"ack_deadline_seconds": 5}, gexc.InvalidArgument, "between 10 and 600"),
        ({"ack_deadline_seconds": 601}, gexc.InvalidArgument, "between 10 and 600"),
        ({"filter": "attributes.x = "}, gexc.InvalidArgument, "."),
        ({"dead_letter_policy": {"dead_letter_topic": f"projects/{PROJECT}/topics/nowhere"}},
         gexc.NotFound, r"resource=nowhere"),
        ({"push_config": {"push_endpoint": "https://example.com/push"}},
         gexc.InvalidArgument, "pushes to loopback only"),
    ],
)
def test_bad_subscriptions_are_refused(
    clients: Clients, fields: dict[str, object], error: type[Exception], match: str
) -> None:
    topic = clients.topic()
    with pytest.raises(error, match=match):
        clients.subscription(topic, **fields)


def test_max_delivery_attempts_must_be_5_to_100(clients: Clients) -> None:
    topic = clients.topic()
    with pytest.raises(gexc.InvalidArgument, match="max_delivery_attempts"):
        clients.subscription(topic, dead_letter_policy={
            "dead_letter_topic": topic, "max_delivery_attempts": 4})
    sub = clients.subscription(topic, dead_letter_policy={"dead_letter_topic": topic})
    got = clients.subscriber.get_subscription(subscription=sub)
    assert got.dead_letter_policy.max_delivery_attempts == 5


def test_subscription_on_a_missing_topic_is_not_found(clients: Clients) -> None:
    with pytest.raises(gexc.NotFound, match=r"resource=absent"):
        clients.subscription(f"projects/{PROJECT}/topics/absent")


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({"data": b"x", "attributes": {f"k{i}": "v" for i in range(101)}}, "Too many attributes"),
        ({"data": b"x", "attributes": {"k" * 257: "v"}}, "attribute key is too long"),
        ({"data": b"x", "attributes": {"k": "v" * 1025}}, "attribute value is too long"),
        ({"data": b""}, "empty"),
        ({"data": b"x" * 10_000_001}, "too large"),
        ({"data": b"x", "ordering_key": "k" * 1025}, r"ordering_key is too long .*1024 bytes"),
        ({"data": b"x", "ordering_key": "\u00e9" * 513}, "ordering_key is too long"),
    ],
)
def test_publish_limits_are_enforced(clients: Clients, message: dict[str, object],
                                     match: str) -> None:
    topic = clients.topic()
    with pytest.raises(gexc.InvalidArgument, match=match):
        clients.publisher.api.publish(topic=topic, messages=[message])


def test_the_largest_allowed_attributes_and_ordering_key_are_accepted(clients: Clients
                                                                      ) -> None:
    topic = clients.topic()
    attributes = {f"{i:03d}" + "k" * 253: "v" * 1024 for i in range(100)}
    response = clients.publisher.api.publish(topic=topic, messages=[
        {"data": b"x", "attributes": attributes, "ordering_key": "k" * 1024}])
    assert len(response.message_ids) == 1


@pytest.mark.parametrize("count", [1001, 5000])
def test_a_publish_request_holds_at_most_1000_messages(clients: Clients, count: int) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    response = clients.publisher.api.publish(topic=topic, messages=[{"data": b"x"}] * 1000)
    assert len(response.message_ids) == 1000
    with pytest.raises(gexc.InvalidArgument,
                       match=rf"Too many messages in the request: {count} \(the limit is 1000"):
        clients.publisher.api.publish(topic=topic, messages=[{"data": b"y"}] * count)
    assert {m.message.data for m in clients.pull(sub, max_messages=1000, wait=True)} == {b"x"}


@pytest.mark.parametrize("seconds", [601, -1])
def test_modify_ack_deadline_takes_0_to_600_seconds(clients: Clients, seconds: int) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    clients.publisher.api.publish(topic=topic, messages=[{"data": b"x"}])
    (received,) = clients.pull(sub, wait=True)
    with pytest.raises(gexc.InvalidArgument,
                       match=rf"Invalid ack_deadline_seconds: {seconds} \(it must be between 0 "
                             r"and 600 seconds\)"):
        clients.subscriber.modify_ack_deadline(request={
            "subscription": sub, "ack_ids": [received.ack_id], "ack_deadline_seconds": seconds})
    for allowed in (600, 0):  # the bounds themselves are accepted; 0 is a nack
        clients.subscriber.modify_ack_deadline(request={
            "subscription": sub, "ack_ids": [received.ack_id], "ack_deadline_seconds": allowed})
    assert [m.message.data for m in clients.pull(sub, wait=True)] == [b"x"]


def test_schemas_are_unimplemented(clients: Clients) -> None:
    with pytest.raises(gexc.MethodNotImplemented,
                       match=r"Schemas \(Topic\.schema_settings\) is not implemented by relay"):
        clients.topic(schema_settings={"schema": f"projects/{PROJECT}/schemas/s",
                                       "encoding": "JSON"})
    schemas = SchemaServiceClient()
    unimplemented = r"SchemaService\.{} is not implemented by relay's Pub/Sub server"
    with pytest.raises(gexc.MethodNotImplemented, match=unimplemented.format("ListSchemas")):
        list(schemas.list_schemas(request={"parent": f"projects/{PROJECT}"}))
    with pytest.raises(gexc.MethodNotImplemented, match=unimplemented.format("CreateSchema")):
        schemas.create_schema(request={
            "parent": f"projects/{PROJECT}", "schema_id": "s",
            "schema": {"type_": "AVRO", "definition": '{"type": "string"}'}})
    with pytest.raises(gexc.MethodNotImplemented, match=unimplemented.format("GetSchema")):
        schemas.get_schema(request={"name": f"projects/{PROJECT}/schemas/s"})


def test_iam_policy_and_unimplemented_methods(clients: Clients) -> None:
    topic = clients.topic()
    policy = clients.publisher.get_iam_policy(request={"resource": topic})
    assert list(policy.bindings) == []
    response = clients.publisher.test_iam_permissions(
        request={"resource": topic, "permissions": ["pubsub.topics.publish"]})
    assert list(response.permissions) == ["pubsub.topics.publish"]
    with pytest.raises(gexc.MethodNotImplemented, match=r"Subscriber\.Seek is not implemented"):
        clients.subscriber.seek(request={"subscription": clients.subscription(topic),
                                         "time": datetime.datetime.now()})
    with pytest.raises(gexc.MethodNotImplemented, match="CreateSnapshot"):
        clients.subscriber.create_snapshot(request={
            "name": f"projects/{PROJECT}/snapshots/snap", "subscription": "x"})


def test_relays_transport_provisions_and_reads_back(clients: Clients) -> None:
    transport = PubSubTransport(Settings.load(gc_project_id=PROJECT, middleware=[]))
    try:
        assert transport.ensure_topic("orders-prov") in (True, False)
        assert transport.ensure_topic("orders-prov") is False
        assert transport.ensure_topic("orders-prov-dead") in (True, False)
        spec = SubscriptionSpec(
            name="orders-prov-sub", topic="orders-prov", ack_deadline=30,
            filter='attributes.kind = "a"', dead_letter_topic="orders-prov-dead",
            max_delivery_attempts=7, enable_exactly_once_delivery=True, labels={"l": "1"},
        )
        transport.delete_subscription(spec.name)
        assert transport.create_subscription(spec) is True
        assert transport.get_subscription(spec.name) == spec
        assert transport.topic_iam_policy("orders-prov") == {}
    finally:
        transport.close()


def test_relays_transport_publishes_and_consumes(clients: Clients) -> None:
    transport = PubSubTransport(Settings.load(gc_project_id=PROJECT, middleware=[]))
    got: list[bytes] = []
    done = threading.Event()

    def on_message(message: object) -> None:
        got.append(message.data)  # type: ignore[attr-defined]
        message.ack()  # type: ignore[attr-defined]
        if len(got) == 3:
            done.set()

    try:
        transport.ensure_topic("relay-consume")
        transport.delete_subscription("relay-consume-sub")
        transport.create_subscription(SubscriptionSpec(name="relay-consume-sub",
                                                       topic="relay-consume"))
        for i in range(3):
            transport.publish("relay-consume", b"m%d" % i, {"n": str(i)}).result(timeout=10)
        stream = transport.subscribe("relay-consume-sub", on_message, FlowControl())
        assert done.wait(10)
        stream.close(timeout=5)
        assert sorted(got) == [b"m0", b"m1", b"m2"]
    finally:
        transport.close()
