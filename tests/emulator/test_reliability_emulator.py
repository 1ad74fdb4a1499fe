"""Dead letters, ordering keys, exactly-once acks and provisioning modes on the emulator."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import relay
from relay.transports.base import ProvisionAction

PROJECT = "projects/relay-tests"


def _handler(data: Any, **attrs: Any) -> None:
    return None


def _read(admin: Any, name: str) -> Any:
    return admin.subscriber.get_subscription(subscription=f"{PROJECT}/subscriptions/{name}")


def test_setup_provisions_dead_letter_ordering_and_exactly_once(harness, admin, unique_name):
    topic = unique_name("dl-prov")
    declared = relay.sub(
        topic, dead_letter_topic=f"{topic}-dead", max_delivery_attempts=7,
        enable_message_ordering=True, enable_exactly_once_delivery=True,
    )(_handler)
    worker = relay.Worker([declared], settings=harness.settings, transport=harness.transport)
    main, keeper = worker.setup()
    assert (main.action, keeper.action) == (ProvisionAction.CREATED, ProvisionAction.CREATED)
    created = _read(admin, declared.name)
    assert created.dead_letter_policy.dead_letter_topic == f"{PROJECT}/topics/{topic}-dead"
    assert created.dead_letter_policy.max_delivery_attempts == 7
    assert created.enable_message_ordering and created.enable_exactly_once_delivery
    assert _read(admin, f"{topic}-dead").topic == f"{PROJECT}/topics/{topic}-dead"
    # Read back through relay: nothing to change.
    assert [r.action for r in worker.setup()] == [ProvisionAction.UNCHANGED] * 2

    changed = declared.with_options(max_delivery_attempts=12)
    [updated, _] = relay.Worker(
        [changed], settings=harness.settings, transport=harness.transport
    ).setup()
    assert updated.changed == ("max_delivery_attempts",)
    assert _read(admin, declared.name).dead_letter_policy.max_delivery_attempts == 12


def test_verify_mode_fails_with_the_list_and_creates_nothing(harness, admin, unique_name):
    topic = unique_name("verify")
    declared = relay.sub(topic, dead_letter_topic=f"{topic}-dead")(_handler)
    conf = harness.settings.replace(provisioning="verify")
    worker = relay.Worker([declared], settings=conf, transport=harness.transport)
    with pytest.raises(relay.ProvisioningError) as info:
        worker.setup()
    for line in (f"topic {topic} does not exist", f"subscription {declared.name} does not exist",
                 f"topic {topic}-dead does not exist"):
        assert line in str(info.value)
    topics = {t.name for t in admin.publisher.list_topics(project=PROJECT)}
    assert f"{PROJECT}/topics/{topic}" not in topics

    relay.Worker([declared], settings=harness.settings, transport=harness.transport).setup()
    verified = relay.Worker([declared], settings=conf, transport=harness.transport).setup()
    assert len(verified) == 2


def test_an_undecodable_payload_lands_on_the_dead_letter_topic(harness, unique_name, wait_for):
    topic = unique_name("undecodable")
    received: list[Any] = []

    @relay.sub(topic, dead_letter_topic=f"{topic}-dead")
    def handle(data: Any, **attrs: Any) -> None:
        received.append(data)

    harness.worker([handle])
    harness.transport.publish(topic, b"\xffnot json", {"kind": "broken"}).result(10)
    harness.transport.publish(topic, b'{"ok": 1}', {}).result(10)
    wait_for(lambda: received == [{"ok": 1}], what="the good message")
    wait_for(lambda: harness.wire.acks(handle.name) == 2, what="both acks on the wire")

    got: list[Any] = []
    # The dead letter is kept by the subscription relay created on the dead-letter topic.
    stream = harness.transport.subscribe(f"{topic}-dead", lambda m: (got.append(m), m.ack()),
                                         harness.settings.flow_control)
    try:
        wait_for(lambda: got, timeout=20, what="the dead letter")
    finally:
        stream.close(timeout=10)
    [letter] = got
    assert letter.data == b"\xffnot json"
    assert letter.attributes["kind"] == "broken"
    assert letter.attributes["relay_dead_letter_reason"].startswith("DecodeError")
    assert letter.attributes["relay_dead_letter_subscription"] == handle.name


def test_ordered_messages_are_processed_in_order_per_key(harness, unique_name, wait_for):
    topic = unique_name("ordered")
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    @relay.sub(topic, enable_message_ordering=True)
    def handle(data: Any, **attrs: Any) -> None:
        with lock:
            seen.append((data["key"], data["n"]))

    worker = relay.Worker([handle], settings=harness.settings.replace(concurrency=8),
                          transport=harness.transport)
    worker.setup()
    futures = [
        harness.publisher.publish(topic, {"key": key, "n": n}, ordering_key=key)
        for n in range(30) for key in ("a", "b", "c")
    ]
    for future in futures:
        future.result(10)
    worker.start()
    harness.workers.append(worker)
    wait_for(lambda: len(seen) >= 90, timeout=30, what="90 ordered messages")
    for key in ("a", "b", "c"):
        assert [n for k, n in seen if k == key] == list(range(30))


def test_an_ordering_key_is_resumed_after_a_failed_publish(harness, unique_name, wait_for):
    topic = unique_name("resume")
    publisher = harness.publisher
    # The topic does not exist yet: the ordered publish fails and google pauses the key.
    failed = publisher.publish(topic, {"n": 1}, ordering_key="k")
    with pytest.raises(Exception, match=r"(?i)not ?found"):
        failed.result(20)
    harness.transport.ensure_topic(topic)
    # Without the resume every later publish with key "k" would fail at once.
    wait_for(lambda: _publishes(publisher, topic), timeout=10, what="the key to be resumed")
    [(message, error, _)] = harness.recorder.events("post_publish_failure")
    assert message.data == {"n": 1} and message.ordering_key == "k"
    assert "not found" in str(error).lower()


def _publishes(publisher: relay.Publisher, topic: str) -> bool:
    try:
        publisher.publish(topic, {"n": 2}, ordering_key="k").result(10)
    except Exception:
        return False
    return True


def test_exactly_once_acks_are_confirmed(harness, unique_name, wait_for):
    topic = unique_name("eod")
    done = threading.Event()

    @relay.sub(topic, enable_exactly_once_delivery=True)
    def handle(data: Any, **attrs: Any) -> None:
        done.set()

    class AckFailures(relay.BaseMiddleware):
        def __init__(self) -> None:
            self.errors: list[Any] = []

        def post_ack_failure(self, subscription: Any, message: Any, error: Any) -> None:
            self.errors.append(error)

    failures = AckFailures()
    worker = relay.Worker([handle], settings=harness.settings, transport=harness.transport,
                          middleware=relay.MiddlewareChain([failures]))
    harness.workers.append(worker)
    worker.start()
    harness.transport.publish(topic, b"{}", {}).result(10)
    assert done.wait(20)
    wait_for(lambda: harness.wire.acks(handle.name) == 1, what="the ack on the wire")
    assert failures.errors == []


def test_a_retry_policy_on_the_emulator_gets_one_warning_about_its_fault(
    harness, unique_name, caplog, monkeypatch
):
    from relay.transports.pubsub import admin as pubsub_admin

    def created(conf: relay.Settings) -> list[str]:
        monkeypatch.setattr(pubsub_admin, "_warned_emulator_retry_policy", False)
        caplog.clear()
        for base in ("rp-one", "rp-two"):
            declared = relay.sub(unique_name(base))(_handler)
            relay.Worker([declared], settings=conf, transport=harness.transport).setup()
        return [r.getMessage() for r in caplog.records
                if r.name == "relay.transports.pubsub" and "emulator" in r.getMessage()]

    with caplog.at_level("WARNING", logger="relay.transports.pubsub"):
        warned = created(harness.settings)  # relay's default retry policy
        assert len(warned) == 1, warned  # once per process, not per subscription
        assert "has a retry policy" in warned[0] and "DEFAULT_RETRY_POLICY=none" in warned[0]
        assert created(harness.settings.replace(default_retry_policy=None)) == []
