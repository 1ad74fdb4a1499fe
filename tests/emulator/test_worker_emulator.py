"""publish -> Worker -> handler -> ack, end to end on the Pub/Sub emulator, through
the default transport (``tests/transports/test_pubsub_worker.py`` runs the same on
``TRANSPORT="pubsub"``).

Acks are proven on the wire (``harness.wire``: the acks and nacks the emulator
accepted), because on the emulator a lost ack would only show up as a
redelivery 20 to 70 s later.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

import relay
from relay.errors import DecodeError
from relay.message import Action, Status
from relay.transports.base import FlowControl
from relay.transports.pubsub import PubSubTransport
from relay.transports.pubsub.transport import EMULATOR_CHANNEL_OPTIONS
from tests.conftest import EMULATOR_PROJECT, WireLog

#: How long "nothing more happens" is watched for.
QUIET = 1.0


def test_sync_handler_runs_on_the_worker_pool_and_its_message_is_acked(
    harness, unique_name, wait_for
):
    topic = unique_name("sync")
    calls = []

    @relay.sub(topic)
    def handler(data, **attrs):
        calls.append((data, threading.current_thread().name))
        return "handled"

    harness.worker([handler])
    message_id = harness.publisher.publish(topic, {"n": 1}, blocking=True).result()

    ((message, outcome),) = wait_for(lambda: harness.recorder.outcomes(), what="an outcome")
    assert message.id == message_id
    assert (outcome.status, outcome.action, outcome.result) == (
        Status.SUCCESS, Action.ACK, "handled",
    )
    ((data, thread),) = calls
    assert data == {"n": 1}
    # Handed off to the Worker's one executor, and google made no pool of its own.
    assert thread.startswith("relay-handler")
    assert not [t.name for t in threading.enumerate() if "ThreadScheduler" in t.name]
    wait_for(lambda: harness.wire.acks(handler.name) == 1, what="the ack on the wire")
    assert harness.wire.nacks(handler.name) == 0


def test_async_handler_runs_on_the_worker_loop_and_its_message_is_acked(
    harness, unique_name, wait_for
):
    topic = unique_name("async")
    calls = []

    @relay.sub(topic)
    async def handler(data, **attrs):
        await asyncio.sleep(0.01)
        calls.append((data, threading.current_thread().name))
        return data["n"] * 2

    harness.worker([handler])
    message_id = harness.publisher.publish(topic, {"n": 21}, blocking=True).result()

    ((message, outcome),) = wait_for(lambda: harness.recorder.outcomes(), what="an outcome")
    assert message.id == message_id
    assert (outcome.status, outcome.action, outcome.result) == (Status.SUCCESS, Action.ACK, 42)
    assert calls == [({"n": 21}, "relay-asyncio")]
    wait_for(lambda: harness.wire.acks(handler.name) == 1, what="the ack on the wire")


def test_filter_by_skips_and_acks_without_calling_the_handler(harness, unique_name, wait_for):
    topic = unique_name("filtered")
    calls = []

    @relay.sub(topic, filter_by=lambda **attrs: attrs.get("kind") == "keep")
    def handler(data, **attrs):
        calls.append(data)

    harness.worker([handler])
    dropped = harness.publisher.publish(topic, {"n": 1}, kind="drop", blocking=True).result()
    kept = harness.publisher.publish(topic, {"n": 2}, kind="keep", blocking=True).result()

    outcomes = dict(
        (message.id, outcome)
        for message, outcome in wait_for(
            lambda: len(harness.recorder.outcomes()) == 2 and harness.recorder.outcomes(),
            what="two outcomes",
        )
    )
    assert (outcomes[dropped].status, outcomes[dropped].action) == (Status.SKIPPED, Action.ACK)
    assert (outcomes[kept].status, outcomes[kept].action) == (Status.SUCCESS, Action.ACK)
    assert calls == [{"n": 2}]
    assert harness.recorder.events("post_process_message_failure") == []
    assert [args[1].id for args in harness.recorder.events("post_process_message_success")] == [
        kept
    ]
    wait_for(lambda: harness.wire.acks(handler.name) == 2, what="both acks on the wire")


def test_attributes_round_trip_with_published_at_and_ordering_key(
    harness, unique_name, wait_for
):
    topic = unique_name("attrs")
    received = []

    @relay.sub(topic)
    def handler(data, **attrs):
        received.append((data, attrs))

    harness.worker([handler])
    before = time.time()
    future = harness.publisher.publish(
        topic,
        {"when": "now", "items": [1, 2]},
        ordering_key="customer-7",
        kind="order",
        note="caf\u00e9 \u2603",
        attrs={"blocking": "an attribute named like a publish() option"},
    )
    message_id = future.result(timeout=10)

    ((message, _outcome),) = wait_for(lambda: harness.recorder.outcomes(), what="an outcome")
    ((data, attrs),) = received
    assert data == {"when": "now", "items": [1, 2]}
    assert set(attrs) == {"kind", "note", "blocking", "published_at"}
    assert attrs["kind"] == "order"
    assert attrs["note"] == "caf\u00e9 \u2603"
    assert attrs["blocking"] == "an attribute named like a publish() option"
    assert before - 1 <= float(attrs["published_at"]) <= time.time()
    assert message.id == message_id
    assert message.ordering_key == "customer-7"
    assert message.publish_time is not None
    assert abs(message.publish_time - datetime.now(timezone.utc)) < timedelta(minutes=1)
    ((published, _elapsed),) = harness.recorder.events("post_publish_success")
    assert published.message_id == message_id


def test_a_handler_exception_leads_to_redelivery(make_harness, unique_name, wait_for):
    # No retry policy, so Pub/Sub itself would redeliver at once too (the
    # emulator ignores the first backoff anyway).
    harness = make_harness(default_retry_policy=None)
    topic = unique_name("flaky")
    attempts = []

    @relay.sub(topic)
    def handler(data, **attrs):
        attempts.append(data)
        if len(attempts) == 1:
            raise RuntimeError("transient failure")

    harness.worker([handler])
    message_id = harness.publisher.publish(topic, {"n": 1}, blocking=True).result()

    outcomes = wait_for(
        lambda: len(harness.recorder.outcomes()) >= 2 and harness.recorder.outcomes(),
        what="the redelivery",
    )
    (first_message, first), (second_message, second) = outcomes[:2]
    assert first_message.id == second_message.id == message_id
    assert (first.status, first.action) == (Status.FAILURE, Action.NACK)
    assert isinstance(first.exception, RuntimeError)
    assert (second.status, second.action) == (Status.SUCCESS, Action.ACK)
    assert attempts == [{"n": 1}, {"n": 1}]
    wait_for(lambda: harness.wire.acks(handler.name) == 1, what="the final ack")
    assert harness.wire.nacks(handler.name) >= 1


def test_a_payload_that_is_not_json_is_acked_and_reported(harness, unique_name, wait_for):
    topic = unique_name("garbage")
    calls = []

    @relay.sub(topic)
    def handler(data, **attrs):
        calls.append(data)

    harness.worker([handler])
    # Straight through the transport: the Publisher only ever sends JSON.
    message_id = harness.transport.publish(topic, b"\xff{not json", {"k": "v"}).result(10)

    ((_subscription, message, outcome),) = wait_for(
        lambda: harness.recorder.events("post_process_message_failure"), what="the failure hook"
    )
    assert message.id == message_id
    assert isinstance(outcome.exception, DecodeError)
    assert (outcome.status, outcome.action) == (Status.FAILURE, Action.ACK)
    wait_for(lambda: harness.wire.acks(handler.name) == 1, what="the ack on the wire")
    time.sleep(QUIET)
    assert calls == []
    assert harness.wire.nacks(handler.name) == 0
    assert len(harness.recorder.events("pre_process_message")) == 1, "it was redelivered"


class Exploding(relay.BaseMiddleware):
    """Every processing hook raises."""

    def pre_process_message(self, subscription, message):
        raise RuntimeError("pre_process_message exploded")

    def post_process_message_success(self, subscription, message, outcome):
        raise RuntimeError("post_process_message_success exploded")

    def post_process_message(self, subscription, message, outcome):
        raise RuntimeError("post_process_message exploded")

    def pre_publish(self, message):
        raise RuntimeError("pre_publish exploded")


def test_middleware_that_raises_does_not_stop_processing(
    make_harness, recorder, unique_name, wait_for
):
    harness = make_harness(middleware=[Exploding(), recorder])
    topic = unique_name("exploding")
    calls = []

    @relay.sub(topic)
    def handler(data, **attrs):
        calls.append(data["n"])

    harness.worker([handler])
    ids = {harness.publisher.publish(topic, {"n": n}, blocking=True).result() for n in range(3)}

    outcomes = wait_for(
        lambda: len(harness.recorder.outcomes()) == 3 and harness.recorder.outcomes(),
        what="three outcomes",
    )
    assert {message.id for message, _ in outcomes} == ids
    assert all(
        (outcome.status, outcome.action) == (Status.SUCCESS, Action.ACK) for _, outcome in outcomes
    )
    assert sorted(calls) == [0, 1, 2]
    wait_for(lambda: harness.wire.acks(handler.name) == 3, what="three acks on the wire")


def test_graceful_stop_finishes_in_flight_handlers_and_acks_them(
    harness, unique_name, wait_for
):
    topic = unique_name("draining")
    started, finished = [], []
    lock = threading.Lock()

    @relay.sub(topic)
    def handler(data, **attrs):
        with lock:
            started.append(data["n"])
        time.sleep(1.5)
        with lock:
            finished.append(data["n"])

    worker = harness.worker([handler], concurrency=4, drain_timeout=20)
    ids = {harness.publisher.publish(topic, {"n": n}, blocking=True).result() for n in range(3)}
    wait_for(lambda: len(started) == 3, what="three handlers running")
    assert finished == []

    assert worker.stop() is True
    assert sorted(finished) == [0, 1, 2], "stop() returned before its handlers finished"
    # The acks were flushed by stop() itself: no waiting.
    assert harness.wire.acks(handler.name) == 3
    assert harness.wire.nacks(handler.name) == 0
    assert {m.id for m, _ in harness.recorder.outcomes()} == ids

    # Consume again: none of them comes back.
    again = []
    stream = harness.transport.subscribe(handler.name, again.append, FlowControl())
    time.sleep(QUIET)
    stream.close(timeout=10)
    assert again == []


def test_a_failed_stream_is_seen_and_restarted_by_the_supervisor(
    harness, admin, unique_name, wait_for
):
    topic = unique_name("restarted")
    calls = []

    @relay.sub(topic)
    def handler(data, **attrs):
        calls.append(data)

    worker = harness.worker([handler])
    path = f"projects/relay-tests/subscriptions/{handler.name}"
    admin.subscriber.delete_subscription(subscription=path)

    def failed():
        (state,) = worker.status()["subscriptions"]
        return state["failures"] >= 1 and state

    state = wait_for(failed, timeout=20, what="the supervisor to notice the failed stream")
    assert "NotFound" in state["last_error"]

    worker.setup()  # the subscription exists again; a restart (with backoff) succeeds
    harness.publisher.publish(topic, {"n": 1}, blocking=True)
    wait_for(lambda: calls == [{"n": 1}], timeout=30, what="a message on the restarted stream")
    assert worker.status()["subscriptions"][0]["state"] == "open"


#: A 5 MB payload, and one near the 10 MB google-cloud-pubsub lets a publish
#: request carry (10,000,000 bytes with the topic and attributes).
BIG_PAYLOADS = (5_000_000, 9_900_000)


def test_messages_up_to_pubsubs_size_limit_reach_a_worker_on_relays_own_channels(
    pubsub_emulator, recorder, unique_name, wait_for
):
    # Both clients built by relay: google's own emulator channel refused anything
    # over 4 MiB, so these never arrived and the worker said nothing.
    settings = relay.Settings.load(
        environ={}, gc_project_id=EMULATOR_PROJECT, middleware=[recorder],
        default_retry_policy="none",
    )
    transport = PubSubTransport(settings)
    # The same messages on a second subscription, read through a wire log on a
    # channel with relay's options, show the acks reaching the emulator.
    wire = WireLog()
    channel = grpc.intercept_channel(
        grpc.insecure_channel(pubsub_emulator.address, options=EMULATOR_CHANNEL_OPTIONS), wire
    )
    logged = PubSubTransport(settings, subscriber_client=pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=channel)))
    topic = unique_name("big")
    sizes: list[int] = []
    logged_sizes: list[int] = []

    @relay.sub(topic)
    def handler(data, **attrs):
        sizes.append(len(data["blob"]))

    @relay.sub(topic, suffix="wire")
    def wire_handler(data, **attrs):
        logged_sizes.append(len(data["blob"]))

    workers = [relay.Worker([handler], settings=settings, transport=transport),
               relay.Worker([wire_handler], settings=settings, transport=logged)]
    try:
        for worker in workers:
            worker.start()
        publisher = relay.Publisher(transport, settings=settings,
                                    middleware=relay.MiddlewareChain([]))
        for size in BIG_PAYLOADS:
            publisher.publish(topic, {"blob": "x" * size}, blocking=True).result(60)
        def actions() -> list[Action]:
            return [outcome.action for subscription, _, outcome
                    in recorder.events("post_process_message") if subscription.name == handler.name]

        wait_for(lambda: len(actions()) == 2, timeout=30,
                 what="both large messages at the worker on relay's own channels")
        assert sorted(sizes) == list(BIG_PAYLOADS) and actions() == [Action.ACK, Action.ACK]
        wait_for(lambda: wire.acks(wire_handler.name) == 2, timeout=30,
                 what="both acks on the wire")
        assert sorted(logged_sizes) == list(BIG_PAYLOADS)
        assert [s["state"] for w in workers for s in w.status()["subscriptions"]] == ["open"] * 2
    finally:
        for worker in workers:
            worker.stop(timeout=10)
        transport.close()
        logged.close()


def test_messages_up_to_pubsubs_size_limit_reach_a_worker_on_the_default_transport(
    harness, unique_name, wait_for
):
    topic = unique_name("big")
    sizes: list[int] = []

    @relay.sub(topic)
    def handler(data, **attrs):
        sizes.append(len(data["blob"]))

    harness.worker([handler])
    for size in BIG_PAYLOADS:
        harness.publisher.publish(topic, {"blob": "x" * size}, blocking=True).result(60)
    wait_for(lambda: len(sizes) == 2, timeout=30, what="both large messages")
    assert sorted(sizes) == list(BIG_PAYLOADS)
    actions = [o.action for _, o in harness.recorder.outcomes()]
    assert actions == [Action.ACK, Action.ACK]
    wait_for(lambda: harness.wire.acks(handler.name) == 2, what="both acks on the wire")
