"""``GrpcTransport``'s consuming, beyond the contract: threads, flow control by
bytes, leases, batched acks, exactly-once results, ordering, several streams.

All against the session's emulator (relay's own Pub/Sub server)."""

from __future__ import annotations

import threading
import time

import pytest

from relay.errors import AckError, ConfigurationError
from relay.provisioning import ensure_subscription
from relay.settings import Settings
from relay.transports.base import FlowControl, SubscriptionSpec
from tests.transports.test_contract import QUIET, Inbox


def _setup(transport, unique_name, **spec_fields) -> SubscriptionSpec:
    topic = unique_name("grpc")
    transport.ensure_topic(topic)
    spec = SubscriptionSpec(name=f"{topic}-sub", topic=topic, **spec_fields)
    ensure_subscription(transport, spec)
    return spec


def _wait(predicate, timeout=10.0, what=""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def test_every_subscription_runs_on_the_one_loop_thread(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport()
    specs = [_setup(transport, unique_name) for _ in range(12)]
    transport.publish(specs[0].topic, b"{}", {}).result(10)  # the loop and channel exist
    before = threading.active_count()
    threads: set[str] = set()
    lock = threading.Lock()

    def record(message):
        with lock:
            threads.add(threading.current_thread().name)
        message.ack()

    streams = [transport.subscribe(s.name, record, FlowControl()) for s in specs]
    for spec in specs:
        transport.publish(spec.topic, b"{}", {}).result(10)
    _wait(lambda: sum(s.sender.acked for s in streams) >= 12, what="12 acks")
    # No thread per subscription or stream: at most gRPC's own, created once.
    assert threading.active_count() - before <= 2
    assert threads == {"relay-grpc"}
    for stream in streams:
        stream.close(timeout=10)


def test_flow_control_bounds_outstanding_bytes(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport()
    spec = _setup(transport, unique_name)
    for i in range(6):
        transport.publish(spec.topic, b"x" * 1000, {"i": str(i)}).result(10)
    inbox = Inbox()
    # Each message is a little over 1000 bytes: two fit in 2500, three do not.
    stream = transport.subscribe(spec.name, inbox, FlowControl(max_bytes=2500))
    first = inbox.wait_for(2)
    time.sleep(QUIET)
    assert len(inbox.ids()) == 2, "more than max_bytes were outstanding"
    first[0].ack()
    inbox.wait_for(3)
    time.sleep(QUIET / 2)
    assert len(inbox.ids()) == 3
    acked = 1
    while acked < 6:
        messages = inbox.wait_for(acked + 1)
        for message in messages[acked:]:
            message.ack()
            acked += 1
    stream.close(timeout=10)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["plain", "exactly-once"])
def test_a_handler_longer_than_the_ack_deadline_keeps_its_lease(
    make_grpc_transport, unique_name, exactly_once
):
    transport, wire = make_grpc_transport()
    spec = _setup(
        transport, unique_name, ack_deadline=10, enable_exactly_once_delivery=exactly_once
    )
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl(max_lease_extension=10))
    message_id = transport.publish(spec.topic, b"{}", {}).result(10)
    (message,) = inbox.wait_for(1)
    time.sleep(16)  # past the 10 s stream ack deadline and one extension
    assert inbox.ids() == [message_id], "redelivered although its lease was extended"
    assert stream.extended >= 1
    assert message.ack_with_response().result(10) is None  # the lease is still ours
    _wait(lambda: wire.acks(spec.name) == 1, what="the ack on the wire")
    stream.close(timeout=10)


def test_acks_from_many_threads_go_out_in_few_calls(make_grpc_transport, unique_name):
    transport, wire = make_grpc_transport()
    spec = _setup(transport, unique_name)
    futures = [transport.publish(spec.topic, b'{"i": %d}' % i, {}) for i in range(300)]
    for future in futures:
        future.result(10)
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl(max_messages=1000))
    messages = inbox.wait_for(300)
    workers = [
        threading.Thread(target=lambda part=part: [m.ack() for m in part])
        for part in (messages[i::4] for i in range(4))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    _wait(lambda: wire.acks(spec.name) == 300, what="300 acks on the wire")
    assert wire.calls["Acknowledge"] <= 10, wire.calls
    stream.close(timeout=10)
    assert wire.acks(spec.name) == 300


def test_ack_with_response_reports_exactly_once_failures(make_grpc_transport, unique_name):
    transport, wire = make_grpc_transport()
    spec = _setup(transport, unique_name, enable_exactly_once_delivery=True)
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl())
    transport.publish(spec.topic, b'{"n": 1}', {}).result(10)
    transport.publish(spec.topic, b'{"n": 2}', {}).result(10)
    good, stale = inbox.wait_for(2)
    # Delivered only once the broker confirmed their leases (receipt modacks).
    assert wire.calls["ModifyAckDeadline"] >= 1
    assert good.ack_with_response().result(10) is None
    stale.nack()  # its ack id names no lease any more once the nack is applied
    _wait(lambda: len(inbox.ids()) >= 3, what="the redelivery")
    # Settle the stale delivery a second time (bypassing settle-once on purpose)
    # so its dead ack id reaches the broker: Pub/Sub reports it in an ErrorInfo.
    stale._settled = False
    with pytest.raises(AckError, match="PERMANENT_FAILURE_INVALID_ACK_ID"):
        stale.ack_with_response().result(10)
    inbox.messages[2].ack_with_response().result(10)
    stream.close(timeout=10)


def test_an_ordering_key_has_one_message_out_at_a_time_in_order(
    make_grpc_transport, unique_name
):
    transport, _ = make_grpc_transport()
    spec = _setup(transport, unique_name, enable_message_ordering=True)
    sent: dict[str, list[str]] = {"a": [], "b": []}
    for i in range(10):
        for key in ("a", "b"):
            future = transport.publish(spec.topic, b'{"i": %d}' % i, {}, ordering_key=key)
            sent[key].append(future.result(10))
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl())
    inbox.wait_for(2)
    time.sleep(QUIET)
    assert sorted(m.ordering_key for m in inbox.messages) == ["a", "b"]
    acked = 0
    while acked < 20:
        messages = inbox.wait_for(acked + 1)
        for message in messages[acked:]:
            message.ack()
            acked += 1
    got = {key: [m.message_id for m in inbox.messages if m.ordering_key == key] for key in sent}
    assert got == sent
    stream.close(timeout=10)


def test_several_streams_per_subscription_share_its_flow_control(
    make_grpc_transport, unique_name, pubsub_emulator
):
    transport, wire = make_grpc_transport(streams_per_subscription=2)
    spec = _setup(transport, unique_name)
    for i in range(20):
        transport.publish(spec.topic, b'{"i": %d}' % i, {}).result(10)
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl(max_messages=4))
    assert len(stream.pulls) == 2
    assert [p.max_messages for p in stream.pulls] == [2, 2]
    if pubsub_emulator.kind == "relay":
        inbox.wait_for(4)
        time.sleep(QUIET)
        assert len(inbox.ids()) == 4
        assert all(p.open for p in stream.pulls)
        assert {m._pull.index for m in inbox.messages} == {0, 1}
    else:
        # Google's emulator ignores a stream's max_outstanding_messages (it sends
        # 100 a response): the first stream takes all 20 and the transport holds
        # back all but its share, so the other stream gets none until acks come.
        inbox.wait_for(2)
        time.sleep(QUIET)
        assert len(inbox.ids()) <= 4
    done = 0
    while done < 20:
        messages = inbox.wait_for(done + 1)
        for message in messages[done:]:
            message.ack()
            done += 1
    _wait(lambda: wire.acks(spec.name) == 20, what="20 acks")
    stream.close(timeout=10)


def test_streams_per_subscription_is_validated():
    assert Settings.load(environ={}, streams_per_subscription="3").streams_per_subscription == 3
    for bad in (0, 33, "two"):
        with pytest.raises(ConfigurationError, match="STREAMS_PER_SUBSCRIPTION"):
            Settings.load(environ={}, streams_per_subscription=bad)


def test_transport_grpc_builds_the_grpc_transport(monkeypatch):
    from relay.app import build_transport
    from relay.transports.grpc import GrpcTransport

    monkeypatch.setenv("RELAY_TRANSPORT", "grpc")
    transport = build_transport(Settings.load(gc_project_id="p"))
    assert isinstance(transport, GrpcTransport)
    transport.close()


def test_delivery_attempt_counts_deliveries_with_a_dead_letter_policy(
    make_grpc_transport, unique_name
):
    transport, _ = make_grpc_transport()
    dead = unique_name("dead")
    transport.ensure_topic(dead)
    spec = _setup(transport, unique_name, dead_letter_topic=dead, max_delivery_attempts=5)
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl())
    transport.publish(spec.topic, b"{}", {}).result(10)
    inbox.wait_for(1)[0].nack()
    second = inbox.wait_for(2)
    assert [m.delivery_attempt for m in second] == [1, 2]
    second[1].ack()
    stream.close(timeout=10)


def test_streams_are_reopened_at_stream_lifetime_without_a_failure(
    make_grpc_transport, unique_name
):
    transport, wire = make_grpc_transport(stream_lifetime=5)
    spec = _setup(transport, unique_name)
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl())
    first_call = None
    _wait(lambda: stream.pulls[0].call is not None, what="the first call")
    first_call = stream.pulls[0].call
    time.sleep(6.5)
    assert stream.pulls[0].call is not first_call, "not reopened at STREAM_LIFETIME"
    assert stream.failure() is None and stream.connected() and not stream.done()
    transport.publish(spec.topic, b"{}", {}).result(10)
    inbox.wait_for(1)[0].ack()
    _wait(lambda: wire.acks(spec.name) == 1, what="the ack")
    stream.close(timeout=10)


def test_a_message_held_past_max_lease_duration_is_let_go(make_grpc_transport, unique_name):
    transport, _ = make_grpc_transport()
    spec = _setup(transport, unique_name, ack_deadline=10)
    inbox = Inbox()
    # FlowControl itself takes any duration (Settings asks for 10 s or more).
    stream = transport.subscribe(
        spec.name, inbox, FlowControl(max_lease_duration=2, max_lease_extension=10)
    )
    message_id = transport.publish(spec.topic, b"{}", {}).result(10)
    inbox.wait_for(1)
    # Not extended past 2 s: the 10 s stream ack deadline lapses and it comes again.
    again = inbox.wait_for(2, timeout=20)
    assert [m.message_id for m in again] == [message_id, message_id]
    assert stream.extended == 0
    again[1].ack()
    stream.close(timeout=10)
