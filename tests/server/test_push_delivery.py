"""Push delivery, through google-cloud-pubsub's unmodified clients, to an HTTP
endpoint served by the test on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import field_mask_pb2
from google.pubsub_v1 import types as gtypes

from relay.emulator import free_port
from relay.server import PubSubServer
from relay.server.push import Pusher
from relay.server.queue import Config, Entry, Queue
from relay.server.state import Broker, PubsubMessage
from relay.server.streams import Settle
from tests.server.conftest import PROJECT, Clients, wait_for
from tests.support.push_endpoint import PushEndpoint, Request

pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")

#: Backoff short enough for tests (the push default starts at 100 ms).
FAST_RETRY = {"minimum_backoff": {"nanos": 50_000_000}, "maximum_backoff": {"nanos": 100_000_000}}


class Endpoint(PushEndpoint):
    """A ``PushEndpoint`` at ``/push?token=t`` (a query the push must keep)."""

    def __init__(self, answer: Callable[[Request], int] = lambda r: 204) -> None:
        super().__init__(answer, path="/push?token=t")


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    made = Endpoint()
    yield made
    made.close()


def publish(clients: Clients, topic: str, data: bytes, ordering_key: str = "", **attrs: str
            ) -> str:
    return str(clients.publisher.publish(topic, data, ordering_key=ordering_key, **attrs).result())


def test_a_pushed_message_is_wrapped_and_acked_by_204(clients: Clients, endpoint: Endpoint
                                                      ) -> None:
    topic = clients.topic()
    push_config = {"push_endpoint": endpoint.url, "oidc_token": {
        "service_account_email": "pusher@p.iam.gserviceaccount.com", "audience": "aud"}}
    sub = clients.subscription(topic, push_config=push_config)
    stored = clients.subscriber.get_subscription(subscription=sub).push_config
    assert stored.push_endpoint == endpoint.url
    assert stored.oidc_token.audience == "aud"
    project = f"projects/{PROJECT}"
    listed = {s.name: s for s in clients.subscriber.list_subscriptions(project=project)}
    assert listed[sub].push_config.push_endpoint == endpoint.url

    message_id = publish(clients, topic, b"hello \x00 bytes", "key-1", kind="order", n="1")
    assert wait_for(lambda: len(endpoint.got()) == 1)
    request = endpoint.got()[0]
    assert request.path == "/push?token=t"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers  # relay cannot sign Google ID tokens
    body = request.json()
    assert body["subscription"] == sub
    assert "deliveryAttempt" not in body  # only with a dead-letter policy
    message = body["message"]
    assert base64.b64decode(message["data"]) == b"hello \x00 bytes"
    assert message["attributes"] == {"kind": "order", "n": "1"}
    assert message["messageId"] == message["message_id"] == message_id
    assert message["publishTime"] == message["publish_time"]
    published = datetime.datetime.fromisoformat(message["publishTime"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - published).total_seconds()) < 30
    assert message["orderingKey"] == "key-1"

    # Acked: not delivered again; the next message reuses the kept-alive connection.
    publish(clients, topic, b"second")
    assert wait_for(lambda: len(endpoint.got()) == 2)
    time.sleep(0.4)
    got = endpoint.got()
    assert [base64.b64decode(r.json()["message"]["data"]) for r in got] == [
        b"hello \x00 bytes", b"second"]
    assert got[0].port == got[1].port

    # A push subscription cannot be pulled, as on Pub/Sub.
    with pytest.raises(gexc.FailedPrecondition, match="push subscriptions"):
        clients.pull(sub)


def test_a_500_is_redelivered_with_pushs_backoff_until_acked(clients: Clients) -> None:
    answers = iter([500, 503, 204])
    endpoint = Endpoint(lambda r: next(answers, 204))
    try:
        topic = clients.topic()
        dead = clients.topic("dead")
        sub = clients.subscription(topic, push_config={"push_endpoint": endpoint.url},
                                   dead_letter_policy={"dead_letter_topic": dead})
        publish(clients, topic, b"flaky")
        assert wait_for(lambda: len(endpoint.got()) == 3)
        time.sleep(0.5)
        got = endpoint.got()
        assert len(got) == 3
        assert [r.json()["deliveryAttempt"] for r in got] == [1, 2, 3]
        assert {r.json()["subscription"] for r in got} == {sub}
        # No retry policy: Pub/Sub's push backoff, 100 ms then 200 ms.
        assert got[1].at - got[0].at >= 0.09
        assert got[2].at - got[1].at >= 0.19
    finally:
        endpoint.close()


def test_after_max_attempts_a_failing_push_is_dead_lettered(clients: Clients) -> None:
    endpoint = Endpoint(lambda r: 500)
    try:
        topic = clients.topic()
        dead = clients.topic("dead")
        dead_sub = clients.subscription(dead, "dead-sub")
        sub = clients.subscription(
            topic, push_config={"push_endpoint": endpoint.url}, retry_policy=FAST_RETRY,
            dead_letter_policy={"dead_letter_topic": dead, "max_delivery_attempts": 5})
        publish(clients, topic, b"poison", origin="test")
        assert wait_for(lambda: len(endpoint.got()) == 5)
        forwarded: list[Any] = []
        assert wait_for(lambda: bool(forwarded.extend(clients.pull(dead_sub)) or forwarded))
        time.sleep(0.3)
        assert [r.json()["deliveryAttempt"] for r in endpoint.got()] == [1, 2, 3, 4, 5]
        message = forwarded[0].message
        assert message.data == b"poison"
        attrs = dict(message.attributes)
        assert attrs["origin"] == "test"
        assert attrs["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
        assert attrs["CloudPubSubDeadLetterSourceSubscription"] == sub.rsplit("/", 1)[-1]
        assert attrs["CloudPubSubDeadLetterSourceSubscriptionProject"] == PROJECT
    finally:
        endpoint.close()


def test_an_unreachable_endpoint_is_a_nack_and_modify_push_config_redirects(
    clients: Clients, endpoint: Endpoint
) -> None:
    topic = clients.topic()
    dead = clients.topic("dead")
    nowhere = f"http://127.0.0.1:{free_port()}/push"
    sub = clients.subscription(topic, push_config={"push_endpoint": nowhere},
                               retry_policy=FAST_RETRY,
                               dead_letter_policy={"dead_letter_topic": dead,
                                                   "max_delivery_attempts": 100})
    publish(clients, topic, b"patient")
    time.sleep(0.5)  # several refused connections, each a nack
    clients.subscriber.modify_push_config(
        request={"subscription": sub, "push_config": {"push_endpoint": endpoint.url}})
    assert wait_for(lambda: len(endpoint.got()) == 1)
    body = endpoint.got()[0].json()
    assert base64.b64decode(body["message"]["data"]) == b"patient"
    assert body["deliveryAttempt"] > 2


def test_no_answer_within_the_ack_deadline_is_a_nack() -> None:
    """Built from the server's parts: an RPC cannot set a deadline under 10 s."""
    first_held = threading.Event()

    def answer(request: Request) -> int:
        if not first_held.is_set():
            first_held.set()
            time.sleep(2.5)  # past the 1 s deadline: the pusher has given up
        return 204

    endpoint = Endpoint(answer)
    # No backoff: the redelivery is ready at once (a backoff needs the broker's ticker).
    queue = Queue(Config(name="projects/p/subscriptions/slow", ack_deadline=1))
    message = PubsubMessage(data=b"slow", message_id="1")
    queue.add([Entry(message, message.SerializeToString(), "")])
    push_config = gtypes.PushConfig.pb()(push_endpoint=endpoint.url)
    pusher = Pusher(queue, push_config, Settle(Broker())).start()
    try:
        assert wait_for(lambda: len(endpoint.got()) == 2, timeout=5)
        got = endpoint.got()
        assert 0.9 <= got[1].at - got[0].at < 2.4  # redelivered after the deadline
        assert wait_for(lambda: queue.counts() == {"ready": 0, "delayed": 0, "leased": 0})
    finally:
        pusher.stop(cut=True, wait=True)
        endpoint.close()


def test_at_most_32_pushes_are_out_at_once(clients: Clients) -> None:
    release = threading.Event()
    endpoint = Endpoint(lambda r: 204 if release.wait(10) else 500)
    try:
        topic = clients.topic()
        clients.subscription(topic, push_config={"push_endpoint": endpoint.url})
        futures = [clients.publisher.publish(topic, b"m%d" % i) for i in range(40)]
        for future in futures:
            future.result()
        assert wait_for(lambda: len(endpoint.got()) == 32)
        time.sleep(0.3)
        assert len(endpoint.got()) == 32  # the 33rd waits for an answer
        release.set()
        assert wait_for(lambda: len(endpoint.got()) == 40)
    finally:
        release.set()
        endpoint.close()


def test_filters_apply_to_push(clients: Clients, endpoint: Endpoint) -> None:
    topic = clients.topic()
    clients.subscription(topic, push_config={"push_endpoint": endpoint.url},
                         filter='attributes.kind = "keep"')
    publish(clients, topic, b"no", kind="drop")
    publish(clients, topic, b"yes", kind="keep")
    assert wait_for(lambda: len(endpoint.got()) == 1)
    time.sleep(0.3)
    assert [base64.b64decode(r.json()["message"]["data"]) for r in endpoint.got()] == [b"yes"]


def test_ordering_keys_push_one_at_a_time(clients: Clients) -> None:
    release = threading.Event()

    def answer(request: Request) -> int:
        if request.json()["message"]["data"] == base64.b64encode(b"k1").decode():
            release.wait(5)
        return 204

    endpoint = Endpoint(answer)
    try:
        topic = clients.topic()
        clients.subscription(topic, push_config={"push_endpoint": endpoint.url},
                             enable_message_ordering=True)
        for data, key in ((b"k1", "k"), (b"k2", "k"), (b"other", "o")):
            publish(clients, topic, data, key)
        assert wait_for(lambda: len(endpoint.got()) == 2)
        time.sleep(0.3)  # k2 must wait for k1's answer; "other" need not
        data = sorted(base64.b64decode(r.json()["message"]["data"]) for r in endpoint.got())
        assert data == [b"k1", b"other"]
        release.set()
        assert wait_for(lambda: len(endpoint.got()) == 3)
        assert base64.b64decode(endpoint.got()[2].json()["message"]["data"]) == b"k2"
    finally:
        release.set()
        endpoint.close()


def test_no_wrapper_with_metadata_sends_the_data_and_headers(clients: Clients,
                                                             endpoint: Endpoint) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic, push_config={
        "push_endpoint": endpoint.url, "no_wrapper": {"write_metadata": True}})
    message_id = publish(clients, topic, b'{"raw": true}', "key", colour="blue")
    assert wait_for(lambda: len(endpoint.got()) == 1)
    request = endpoint.got()[0]
    assert request.body == b'{"raw": true}'
    assert request.headers["colour"] == "blue"
    assert request.headers["x-goog-pubsub-subscription-name"] == sub
    assert request.headers["x-goog-pubsub-message-id"] == message_id
    assert request.headers["x-goog-pubsub-publish-time"].endswith("Z")
    assert request.headers["x-goog-pubsub-ordering-key"] == "key"


def test_a_subscription_switches_between_pull_and_push(clients: Clients,
                                                       endpoint: Endpoint) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    publish(clients, topic, b"one")
    clients.subscriber.update_subscription(request={
        "subscription": {"name": sub, "push_config": {"push_endpoint": endpoint.url}},
        "update_mask": field_mask_pb2.FieldMask(paths=["push_config"])})
    assert wait_for(lambda: len(endpoint.got()) == 1)  # what was waiting is pushed
    with pytest.raises(gexc.FailedPrecondition):
        clients.pull(sub)
    failed = threading.Event()
    stream = clients.subscriber.subscribe(sub, lambda m: m.ack())
    stream.add_done_callback(lambda f: failed.set())
    assert failed.wait(10)
    assert isinstance(stream.exception(), gexc.FailedPrecondition)

    # An empty push config makes it pull again, by either RPC.
    clients.subscriber.modify_push_config(request={"subscription": sub, "push_config": {}})
    assert not clients.subscriber.get_subscription(subscription=sub).push_config.push_endpoint
    publish(clients, topic, b"two")
    pulled = clients.pull(sub, wait=True)
    assert [m.message.data for m in pulled] == [b"two"]
    clients.subscriber.acknowledge(subscription=sub, ack_ids=[pulled[0].ack_id])
    clients.subscriber.update_subscription(request={
        "subscription": {"name": sub, "push_config": {"push_endpoint": endpoint.url}},
        "update_mask": field_mask_pb2.FieldMask(paths=["push_config"])})
    clients.subscriber.update_subscription(request={
        "subscription": {"name": sub},
        "update_mask": field_mask_pb2.FieldMask(paths=["push_config"])})
    publish(clients, topic, b"three")
    assert [m.message.data for m in clients.pull(sub, wait=True)] == [b"three"]
    assert len(endpoint.got()) == 1


@pytest.mark.parametrize("url", [
    "http://example.com/push", "https://10.0.0.1:8443/push", "ftp://127.0.0.1/push", "push",
])
def test_endpoints_off_loopback_are_refused(clients: Clients, url: str) -> None:
    topic = clients.topic()
    with pytest.raises(gexc.InvalidArgument, match="push_endpoint"):
        clients.subscription(topic, push_config={"push_endpoint": url})
    sub = clients.subscription(topic)
    with pytest.raises(gexc.InvalidArgument, match="push_endpoint"):
        clients.subscriber.modify_push_config(
            request={"subscription": sub, "push_config": {"push_endpoint": url}})
    assert not clients.subscriber.get_subscription(subscription=sub).push_config.push_endpoint


def _push_threads(short: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"relay-push-{short}")]


def test_stopping_the_server_ends_its_pushers(monkeypatch: pytest.MonkeyPatch) -> None:
    hold = threading.Event()
    endpoint = Endpoint(lambda r: 204 if hold.wait(10) else 500)
    server = PubSubServer(allow_remote=True).start()
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.address)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(PROJECT, "stopping")
        quiet = publisher.topic_path(PROJECT, "quiet")
        publisher.create_topic(name=topic)
        publisher.create_topic(name=quiet)
        # allow_remote lets an endpoint off loopback be configured (on a topic nothing
        # is published to, so nothing is sent there).
        subscriber.create_subscription(request={
            "name": subscriber.subscription_path(PROJECT, "remote-stop"), "topic": quiet,
            "push_config": {"push_endpoint": "https://push.example.test/x"}})
        subscriber.create_subscription(request={
            "name": subscriber.subscription_path(PROJECT, "held-stop"), "topic": topic,
            "push_config": {"push_endpoint": endpoint.url}})
        publisher.publish(topic, b"held").result()
        assert wait_for(lambda: len(endpoint.got()) == 1)  # a push in flight, held
        assert _push_threads("held-stop") and _push_threads("remote-stop")
        publisher.stop()
        subscriber.close()
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        assert wait_for(lambda: not _push_threads("held-stop") and not _push_threads(
            "remote-stop"), timeout=3), _push_threads("")
    finally:
        hold.set()
        server.stop()
        endpoint.close()
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
