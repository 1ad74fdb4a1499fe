"""Worker.setup() against the emulator, read back through Google's own admin API."""

from __future__ import annotations

import logging

import pytest

import relay
from relay.provisioning import ensure_subscription
from relay.transports.base import ProvisionAction, SubscriptionSpec

PROJECT = "projects/relay-tests"


def _handler(data, **attrs):
    return None


def _read(admin, name):
    return admin.subscriber.get_subscription(subscription=f"{PROJECT}/subscriptions/{name}")


def _backoff(subscription):
    policy = subscription.retry_policy
    return (policy.minimum_backoff.total_seconds(), policy.maximum_backoff.total_seconds())


def test_setup_creates_topic_and_subscription_as_declared(harness, admin, unique_name):
    topic = unique_name("created")
    sub = relay.sub(
        topic,
        ack_deadline=30,
        retry_policy=relay.RetryPolicy(5, 120),
        backend_filter_by='attributes.kind = "a"',
    )(_handler)
    worker = relay.Worker([sub], settings=harness.settings, transport=harness.transport)

    (result,) = worker.setup()

    assert (result.name, result.action) == (sub.name, ProvisionAction.CREATED)
    assert admin.publisher.get_topic(topic=f"{PROJECT}/topics/{topic}").name.endswith(topic)
    created = _read(admin, sub.name)
    assert created.topic == f"{PROJECT}/topics/{topic}"
    assert created.ack_deadline_seconds == 30
    assert _backoff(created) == (5.0, 120.0)
    assert created.filter == 'attributes.kind = "a"'
    (again,) = worker.setup()
    assert again.action is ProvisionAction.UNCHANGED


def test_setup_updates_a_changed_ack_deadline_and_retry_policy(harness, admin, unique_name):
    topic = unique_name("updated")
    before = relay.sub(topic, ack_deadline=30, retry_policy=relay.RetryPolicy(5, 120))(_handler)
    relay.Worker([before], settings=harness.settings, transport=harness.transport).setup()
    assert _read(admin, before.name).ack_deadline_seconds == 30

    after = before.with_options(ack_deadline=45, retry_policy=relay.RetryPolicy(10, 300))
    worker = relay.Worker([after], settings=harness.settings, transport=harness.transport)
    (result,) = worker.setup()

    assert result.action is ProvisionAction.UPDATED
    assert result.changed == ("ack_deadline", "retry_policy")
    updated = _read(admin, after.name)
    assert updated.ack_deadline_seconds == 45  # Relé would have left it at 30
    assert _backoff(updated) == (10.0, 300.0)
    (again,) = worker.setup()
    assert again.action is ProvisionAction.UNCHANGED


def test_setup_falls_back_to_the_settings_ack_deadline_and_retry_policy(
    make_harness, admin, unique_name
):
    harness = make_harness(ack_deadline=20, default_retry_policy=relay.RetryPolicy(3, 30))
    sub = relay.sub(unique_name("defaults"))(_handler)
    relay.Worker([sub], settings=harness.settings, transport=harness.transport).setup()
    created = _read(admin, sub.name)
    assert created.ack_deadline_seconds == 20
    assert _backoff(created) == (3.0, 30.0)


def test_a_changed_filter_is_reported_as_a_conflict_and_left_alone(
    harness, admin, unique_name, caplog
):
    topic = unique_name("filtered")
    first = relay.sub(topic, backend_filter_by='attributes.kind = "a"')(_handler)
    relay.Worker([first], settings=harness.settings, transport=harness.transport).setup()

    second = first.with_options(backend_filter_by='attributes.kind = "b"')
    worker = relay.Worker([second], settings=harness.settings, transport=harness.transport)
    with caplog.at_level(logging.WARNING, logger="relay.worker"):
        (result,) = worker.setup()

    assert result.action is ProvisionAction.UNCHANGED
    (conflict,) = result.conflicts
    assert 'attributes.kind = "a"' in conflict and 'attributes.kind = "b"' in conflict
    assert "delete the subscription" in conflict
    assert any(conflict in record.getMessage() for record in caplog.records)
    assert _read(admin, second.name).filter == 'attributes.kind = "a"'


def test_a_subscription_on_another_topic_is_an_error(harness, unique_name):
    topic = unique_name("topic")
    # Two declarations that both name their subscription "pre-<topic>":
    on_first = relay.sub(f"pre-{topic}")(_handler)
    on_second = relay.sub(topic, prefix="pre")(_handler)
    assert on_first.name == on_second.name != topic
    relay.Worker([on_first], settings=harness.settings, transport=harness.transport).setup()

    worker = relay.Worker([on_second], settings=harness.settings, transport=harness.transport)
    with pytest.raises(relay.TransportError, match=f"exists on topic 'pre-{topic}', not on"):
        worker.setup()


def test_topics_are_created_in_the_configured_storage_regions(make_harness, admin, unique_name):
    harness = make_harness(gc_storage_regions=["europe-west1", "europe-west4"])
    topic = unique_name("regional")
    assert harness.transport.ensure_topic(topic) is True
    stored = admin.publisher.get_topic(topic=f"{PROJECT}/topics/{topic}")
    assert list(stored.message_storage_policy.allowed_persistence_regions) == [
        "europe-west1", "europe-west4",
    ]
    assert harness.transport.ensure_topic(topic) is False


def test_labels_are_set_on_creation(harness, admin, unique_name):
    # Labels are not declared through @sub yet, so through the transport. The
    # emulator rejects "labels" in an update mask, so changing them is covered
    # by the memory transport only.
    topic = unique_name("labelled")
    harness.transport.ensure_topic(topic)
    spec = SubscriptionSpec(name=f"{topic}-sub", topic=topic, labels={"team": "payments"})
    assert ensure_subscription(harness.transport, spec).action is ProvisionAction.CREATED
    assert dict(_read(admin, spec.name).labels) == {"team": "payments"}
    assert ensure_subscription(harness.transport, spec).action is ProvisionAction.UNCHANGED
