"""Delivery semantics, through google-cloud-pubsub's unmodified clients."""

from __future__ import annotations

import datetime
import queue
import threading
import time
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber import exceptions as sub_exc

from tests.server.conftest import Clients, wait_for

# A pull that should find nothing must not wait for messages: return_immediately.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning"),
    pytest.mark.filterwarnings('ignore:The "api" property:DeprecationWarning'),
]


class Received:
    """A streaming-pull callback that records messages and decides each one."""

    def __init__(self, decide: Any = None) -> None:
        self.lock = threading.Lock()
        self.messages: list[Any] = []
        self.decide = decide or (lambda message: message.ack())

    def __call__(self, message: Any) -> None:
        with self.lock:
            self.messages.append(message)
        self.decide(message)

    def data(self) -> list[bytes]:
        with self.lock:
            return [m.data for m in self.messages]


def publish(clients: Clients, topic: str, *payloads: bytes, **attributes: str) -> None:
    for payload in payloads:
        clients.publisher.publish(topic, payload, **attributes).result()


def test_filters_apply_at_delivery(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, filter='attributes.kind = "keep" AND NOT attributes:skip')
    publish(clients, topic, b"yes", kind="keep")
    publish(clients, topic, b"no", kind="drop")
    publish(clients, topic, b"no-either", kind="keep", skip="1")
    publish(clients, topic, b"yes-too", kind="keep")
    received = Received()
    future = clients.subscriber.subscribe(sub, received)
    try:
        assert wait_for(lambda: len(received.data()) >= 2)
        time.sleep(0.3)
        assert sorted(received.data()) == [b"yes", b"yes-too"]
    finally:
        future.cancel()
    # What did not match counts as acknowledged: nothing is left to pull.
    assert clients.pull(sub) == []


def test_acked_messages_are_gone_and_nacked_ones_come_back_at_once(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    publish(clients, topic, b"a", b"b")
    first = clients.pull(sub)
    assert [m.message.data for m in first] == [b"a", b"b"]
    clients.subscriber.acknowledge(subscription=sub, ack_ids=[first[0].ack_id])
    clients.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[first[1].ack_id], ack_deadline_seconds=0)
    again = clients.pull(sub)
    assert [m.message.data for m in again] == [b"b"]
    assert again[0].ack_id != first[1].ack_id
    clients.subscriber.acknowledge(subscription=sub, ack_ids=[again[0].ack_id])
    assert clients.pull(sub) == []


def test_a_pull_response_holds_at_most_1000_messages(clients: Clients) -> None:
    # As a StreamingPull response: relay's server's cap (Pub/Sub may return fewer).
    topic = clients.topic()
    sub = clients.subscription(topic, ack_deadline_seconds=60)
    for batch in range(3):
        clients.publisher.api.publish(topic=topic, messages=[{"data": b"%d" % batch}] * 1000)
    sizes = [len(clients.pull(sub, max_messages=5000)) for _ in range(4)]
    assert sizes == [1000, 1000, 1000, 0]


def test_a_lapsed_lease_is_redelivered_and_a_modack_extends_it(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    publish(clients, topic, b"short", b"extended")
    leased = {m.message.data: m.ack_id for m in clients.pull(sub)}
    # Any deadline from 0 to 600 s is a valid modack; 1 s keeps this test short.
    clients.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[leased[b"short"]], ack_deadline_seconds=1)
    clients.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[leased[b"extended"]], ack_deadline_seconds=30)
    assert clients.pull(sub) == []
    time.sleep(1.2)
    assert [m.message.data for m in clients.pull(sub)] == [b"short"]


def test_retry_policy_backoff_applies_from_the_first_redelivery(clients: Clients) -> None:
    topic = clients.topic()
    policy = {"minimum_backoff": datetime.timedelta(seconds=1),
              "maximum_backoff": datetime.timedelta(seconds=1.5)}
    sub = clients.subscription(topic, retry_policy=policy)
    publish(clients, topic, b"x")
    times = []
    for _ in range(3):
        (message,) = clients.pull(sub, wait=True)
        times.append(time.monotonic())
        clients.subscriber.modify_ack_deadline(
            subscription=sub, ack_ids=[message.ack_id], ack_deadline_seconds=0)
        assert clients.pull(sub) == []  # not straight back
    # First redelivery after minimum_backoff (1 s); the second after 2 s, capped at 1.5.
    gaps = [times[1] - times[0], times[2] - times[1]]
    assert 0.9 <= gaps[0] < 1.5, gaps
    assert 1.4 <= gaps[1] < 2.2, gaps


def test_dead_letters_are_forwarded_with_pubsubs_attributes(clients: Clients) -> None:
    topic, dead_topic = clients.topic(), clients.topic("dead")
    dead_sub = clients.subscription(dead_topic)
    sub = clients.subscription(
        topic, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 5})
    publish(clients, topic, b"poison", origin="test")
    received = Received(lambda message: message.nack())
    future = clients.subscriber.subscribe(sub, received)
    dead: list[Any] = []
    try:
        assert wait_for(lambda: bool(dead.extend(clients.pull(dead_sub))) or bool(dead))
    finally:
        future.cancel()
    assert [m.delivery_attempt for m in received.messages] == [1, 2, 3, 4, 5]
    (forwarded,) = dead
    attributes = dict(forwarded.message.attributes)
    published = received.messages[0].publish_time
    assert forwarded.message.data == b"poison"
    assert attributes.pop("CloudPubSubDeadLetterSourceTopicPublishTime") == published.astimezone(
        datetime.timezone.utc).isoformat(timespec="milliseconds")
    assert attributes == {
        "origin": "test",
        "CloudPubSubDeadLetterSourceDeliveryCount": "5",
        "CloudPubSubDeadLetterSourceSubscription": sub.rsplit("/", 1)[1],
        "CloudPubSubDeadLetterSourceSubscriptionProject": sub.split("/")[1],
    }
    assert forwarded.delivery_attempt == 0  # the dead-letter subscription has no policy
    assert clients.pull(sub) == []  # settled on the source


def test_ordering_keys_one_out_at_a_time_and_redelivered_in_order(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, enable_message_ordering=True)
    futures = [
        clients.publisher.publish(topic, f"{key}{i}".encode(), ordering_key=key)
        for key in ("a", "b") for i in range(3)
    ]
    futures.append(clients.publisher.publish(topic, b"plain"))
    for future in futures:  # each ordering key is its own batch: wait for all
        future.result()
    first = clients.pull(sub)
    assert sorted(m.message.data for m in first) == [b"a0", b"b0", b"plain"]
    by_data = {m.message.data: m.ack_id for m in first}
    clients.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[by_data[b"a0"]], ack_deadline_seconds=0)
    clients.subscriber.acknowledge(subscription=sub, ack_ids=[by_data[b"b0"], by_data[b"plain"]])
    second = clients.pull(sub)
    assert sorted(m.message.data for m in second) == [b"a0", b"b1"]
    clients.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[m.ack_id for m in second], ack_deadline_seconds=0)
    # Through the streaming client: every message, each key in publish order.
    received = Received()
    future = clients.subscriber.subscribe(sub, received)
    try:
        assert wait_for(lambda: len(received.data()) >= 5)
    finally:
        future.cancel()
    assert [d for d in received.data() if d.startswith(b"a")] == [b"a0", b"a1", b"a2"]
    assert [d for d in received.data() if d.startswith(b"b")] == [b"b1", b"b2"]


def test_streaming_pull_honours_flow_control(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    publish(clients, topic, *[b"m%d" % i for i in range(20)])
    held = Received(lambda message: None)  # never settled: the client extends the leases
    future = clients.subscriber.subscribe(
        sub, held, flow_control=pubsub_v1.types.FlowControl(max_messages=5))
    try:
        assert wait_for(lambda: len(held.data()) == 5)
        others: list[Any] = []
        assert wait_for(lambda: bool(others.extend(clients.pull(sub))) or len(others) >= 15)
        time.sleep(0.2)
        assert len(held.data()) == 5 and len(others) == 15
    finally:
        future.cancel()


def test_acks_and_modacks_sent_on_the_stream_work(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    publish(clients, topic, b"ack-me", b"nack-me")
    outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
    outbox.put({"subscription": sub, "stream_ack_deadline_seconds": 10})
    outbox.put({})  # google's client sends empty requests as keepalives

    def requests() -> Any:
        while (request := outbox.get()) is not None:
            yield pubsub_v1.types.StreamingPullRequest(**request)

    stream = clients.subscriber.streaming_pull(requests=requests())
    seen: list[bytes] = []
    ack_ids: list[str] = []
    for response in stream:
        for received in response.received_messages:
            seen.append(received.message.data)
            ack_ids.append(received.ack_id)
            if received.message.data == b"ack-me":
                outbox.put({"ack_ids": [received.ack_id]})
            else:  # nacked once on the stream, then held
                outbox.put({"modify_deadline_ack_ids": [received.ack_id],
                            "modify_deadline_seconds": [0 if len(seen) < 3 else 60]})
        if len(seen) >= 3:
            break
    outbox.put(None)
    stream.cancel()
    assert sorted(seen) == [b"ack-me", b"nack-me", b"nack-me"]
    # The stream's ack settled "ack-me": a nack of every ack id brings back only the other.
    clients.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=ack_ids, ack_deadline_seconds=0)
    assert [m.message.data for m in clients.pull(sub, wait=True)] == [b"nack-me"]


def test_exactly_once_acks_report_invalid_ack_ids(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, enable_exactly_once_delivery=True)
    publish(clients, topic, b"once", b"twice")
    results: dict[bytes, Any] = {}
    nacked: set[bytes] = set()

    def decide(message: Any) -> None:
        if message.data == b"once":
            results[b"once"] = message.ack_with_response().result(timeout=10)
        elif b"twice" not in nacked:
            nacked.add(b"twice")  # first: the redelivery may reach another thread at once
            message.nack_with_response().result(timeout=10)
            results[b"twice"] = message.ack_with_response()  # its ack id is spent
        else:
            message.ack_with_response().result(timeout=10)

    received = Received(decide)
    future = clients.subscriber.subscribe(sub, received)
    try:
        assert wait_for(lambda: len(received.data()) == 3 and b"twice" in results)
        with pytest.raises(sub_exc.AcknowledgeError) as failed:
            results[b"twice"].result(timeout=10)
    finally:
        future.cancel()
    assert failed.value.error_code == sub_exc.AcknowledgeStatus.INVALID_ACK_ID
    assert results[b"once"] == sub_exc.AcknowledgeStatus.SUCCESS
    assert sorted(received.data()) == [b"once", b"twice", b"twice"]


def test_exactly_once_expired_ack_id_fails_with_error_info(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, enable_exactly_once_delivery=True)
    publish(clients, topic, b"x")
    (first,) = clients.pull(sub)
    clients.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=1)
    assert clients.pull(sub) == []  # not redelivered while the lease holds
    time.sleep(1.2)
    (second,) = clients.pull(sub)
    with pytest.raises(gexc.InvalidArgument, match="acknowledgement ids") as failed:
        clients.subscriber.acknowledge(subscription=sub, ack_ids=[first.ack_id])
    (info,) = failed.value.details
    assert info.reason == "EXACTLY_ONCE_ACKID_FAILURE"
    assert dict(info.metadata) == {first.ack_id: "PERMANENT_FAILURE_INVALID_ACK_ID"}
    clients.subscriber.acknowledge(subscription=sub, ack_ids=[second.ack_id])
    assert clients.pull(sub) == []
