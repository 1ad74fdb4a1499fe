"""Provisioning bucket notifications: create, verify, off and ``relay-cli plan``.

Cloud Storage is ``tests/support/gcs_notifications_server.py``, a stand-in for
the JSON API's notification endpoints (no emulator on the package index serves
them), reached by the real google-cloud-storage client through
``STORAGE_EMULATOR_HOST``. Topics and subscriptions are made on the Pub/Sub
emulator, except where a test needs IAM policies, which the emulator lacks.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import relay
from relay import provisioning
from relay.cli import EXIT_DIFFERS, EXIT_OK, main
from relay.contrib.storage import BucketSubscription, bucket_sub
from relay.errors import ProvisioningError
from relay.settings import Settings
from relay.transports.base import ProvisionAction, ProvisionResult
from relay.transports.memory import MemoryTransport
from tests.support.gcs_notifications_server import NotificationsServer

PROJECT = "relay-tests"


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotificationsServer]:
    with NotificationsServer() as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
        yield server


@pytest.fixture
def bucket(gcs: NotificationsServer) -> str:
    name = f"relay-uploads-{uuid.uuid4().hex[:8]}"
    gcs.add_bucket(name)
    return name


def declare(bucket: str, handler_name: str, **options: Any) -> BucketSubscription:
    """A bucket subscription whose handler is called ``handler_name`` (to rename it)."""

    def handler(obj: Any, **attrs: Any) -> None:
        pass

    handler.__name__ = handler.__qualname__ = handler_name
    return bucket_sub(bucket, events=["OBJECT_FINALIZE"], **options)(handler)


@pytest.fixture
def setup(make_pubsub_transport: Callable[..., Any]) -> Callable[..., list[ProvisionResult]]:
    """``setup(subscriptions, **settings)``: ``Worker.setup()`` on the Pub/Sub emulator."""

    def run(subscriptions: list[BucketSubscription], **settings: Any) -> list[ProvisionResult]:
        transport, _ = make_pubsub_transport(**settings)
        worker = relay.Worker(subscriptions, settings=transport.settings, transport=transport)
        return worker.setup()

    return run


def topic_ref(topic: str) -> str:
    return f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}"


def test_create_makes_the_marked_notification_and_a_second_run_changes_nothing(
    gcs: NotificationsServer, bucket: str, setup: Callable[..., list[ProvisionResult]],
    caplog: pytest.LogCaptureFixture, pubsub_emulator: Any,
) -> None:
    topic = f"gcs-{bucket}-finalize"
    with caplog.at_level(logging.INFO, logger="relay.contrib.storage"):
        results = setup([declare(bucket, "on_upload")])
    ((created),) = gcs.notifications(bucket)
    assert {k: created.get(k) for k in ("topic", "event_types", "payload_format")} == {
        "topic": topic_ref(topic), "event_types": ["OBJECT_FINALIZE"],
        "payload_format": "JSON_API_V1",
    }
    assert created["custom_attributes"] == {
        "relay-subscription": topic, "relay-handler": f"{__name__}.on_upload",
    }
    assert results[-1] == ProvisionResult(
        f"notification gs://{bucket} -> {topic}", ProvisionAction.CREATED
    )
    # The service agent's grant: Google's emulator cannot show a topic's IAM policy,
    # and relay says so; relay's server shows one (empty, as a new topic's is).
    if pubsub_emulator.kind == "google":
        assert (
            f"service agent {gcs.service_agent} needs roles/pubsub.publisher on topic {topic}: "
            "cannot be read here (Pub/Sub at" in caplog.text
        )
    else:
        assert (
            f"service agent {gcs.service_agent} has no role on topic {topic} that lets it "
            "publish" in caplog.text
        )

    writes = list(gcs.writes())
    results = setup([declare(bucket, "on_upload")])
    assert gcs.writes() == writes  # nothing created or deleted
    assert [n["id"] for n in gcs.notifications(bucket)] == [created["id"]]
    assert results[-1].action is ProvisionAction.UNCHANGED


def test_a_renamed_handler_replaces_relays_notification_and_leaves_the_others(
    gcs: NotificationsServer, bucket: str, setup: Callable[..., list[ProvisionResult]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = f"gcs-{bucket}-finalize"
    elsewhere = gcs.add_notification(
        bucket, topic=topic_ref("audit"), event_types=["OBJECT_DELETE"]
    )
    same_topic = gcs.add_notification(
        bucket, topic=topic_ref(topic), object_name_prefix="tmp/",
        custom_attributes={"team": "data"},
    )
    other_relay = gcs.add_notification(
        bucket, topic=topic_ref(topic), object_name_prefix="raw/",
        custom_attributes={"relay-subscription": "another-app", "relay-handler": "x.y"},
    )
    foreign = {n["id"]: n for n in gcs.notifications(bucket)}
    setup([declare(bucket, "on_upload")])
    (old,) = [n for n in gcs.notifications(bucket) if n["id"] not in foreign]

    with caplog.at_level(logging.INFO, logger="relay.contrib.storage"):
        results = setup([declare(bucket, "handle_upload")])

    now = {n["id"]: n for n in gcs.notifications(bucket)}
    assert old["id"] not in now
    for ident in (elsewhere, same_topic, other_relay):
        assert now[ident] == foreign[ident]  # never touched
    (new,) = [n for n in now.values() if n["id"] not in foreign]
    assert new["custom_attributes"] == {
        "relay-subscription": topic, "relay-handler": f"{__name__}.handle_upload",
    }
    # Created before the old one was deleted, so no event went unreported.
    assert gcs.writes()[-2:] == [
        ("POST", f"/storage/v1/b/{bucket}/notificationConfigs"),
        ("DELETE", f"/storage/v1/b/{bucket}/notificationConfigs/{old['id']}"),
    ]
    assert results[-1] == ProvisionResult(
        f"notification gs://{bucket} -> {topic}", ProvisionAction.UPDATED,
        (f"replaced {old['id']}",),
    )
    # Whoever else publishes to the topic is reported: their events arrive twice.
    assert f"notification {same_topic} (not relay's) also publishes to topic {topic}" in caplog.text
    assert (
        f"notification {other_relay} (relay's, for subscription 'another-app') also publishes"
        in caplog.text
    )


def test_the_per_bucket_limit_is_a_clear_error_and_nothing_is_created(
    gcs: NotificationsServer, bucket: str, setup: Callable[..., list[ProvisionResult]],
) -> None:
    for n in range(100):
        gcs.add_notification(bucket, topic=topic_ref("audit"), object_name_prefix=f"p{n}/")
    writes = list(gcs.writes())
    with pytest.raises(ProvisioningError) as error:
        setup([declare(bucket, "on_upload")])
    message = str(error.value)
    assert (
        f"cannot create notification gs://{bucket} -> gcs-{bucket}-finalize: bucket {bucket!r} "
        "has 100 notification configurations (0 of them relay's), Cloud Storage's limit per "
        "bucket." in message
    )
    assert f"gcloud storage buckets notifications list gs://{bucket}" in message
    assert gcs.writes() == writes
    assert len(gcs.notifications(bucket)) == 100


def test_verify_lists_a_missing_notification_and_changes_nothing(
    gcs: NotificationsServer, bucket: str, setup: Callable[..., list[ProvisionResult]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = declare(bucket, "on_upload")
    # The topic and subscription exist; the notification was never made (no Storage then).
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    setup([sub])
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)

    with pytest.raises(ProvisioningError) as error:
        setup([sub], provisioning="verify")
    assert (
        f"notification gs://{bucket} -> gcs-{bucket}-finalize does not exist" in str(error.value)
    )
    assert gcs.writes() == [] and gcs.notifications(bucket) == []

    setup([sub])
    results = setup([sub], provisioning="verify")
    assert results[-1] == ProvisionResult(
        f"notification gs://{bucket} -> gcs-{bucket}-finalize", ProvisionAction.UNCHANGED
    )


def test_off_makes_no_storage_call(
    gcs: NotificationsServer, bucket: str, setup: Callable[..., list[ProvisionResult]],
) -> None:
    assert setup([declare(bucket, "on_upload")], provisioning="off") == []
    assert gcs.requests == []


def test_a_missing_bucket_is_a_clear_error(
    gcs: NotificationsServer, setup: Callable[..., list[ProvisionResult]],
) -> None:
    with pytest.raises(ProvisioningError) as error:
        setup([declare("relay-no-such-bucket", "on_upload")])
    assert str(error.value) == (
        f"bucket 'relay-no-such-bucket' does not exist at {gcs.endpoint} (or the credentials "
        "cannot see it): create it, or fix the bucket name given to @bucket_sub"
    )


def test_the_service_agents_grant_is_reported_where_the_policy_can_be_read(
    gcs: NotificationsServer, caplog: pytest.LogCaptureFixture,
) -> None:
    # The bucket belongs to another project than Pub/Sub's: its agent is the one.
    bucket = f"relay-uploads-{uuid.uuid4().hex[:8]}"
    gcs.add_bucket(bucket, project_number="987654321098")
    agent = gcs.agent_of("987654321098")
    settings = Settings.load({"GC_PROJECT_ID": PROJECT, "TRANSPORT": "memory"}, environ={})
    transport = MemoryTransport()
    wanted = provisioning.desired([declare(bucket, "on_upload").resolve(settings)], settings)
    provisioning.provision(transport, wanted, "create")
    topic = f"gcs-{bucket}-finalize"

    with caplog.at_level(logging.WARNING, logger="relay.contrib.storage"):
        step = provisioning.plan(transport, wanted).steps[-1]
    assert step.action == "unchanged"
    member = f"serviceAccount:{agent}"
    assert step.details[-1] == (
        f"service agent {agent} has no role on topic {topic} that lets it publish "
        "(a grant on the whole project does not show here); without one no event arrives: "
        f"gcloud pubsub topics add-iam-policy-binding {topic} --project={PROJECT} "
        f"--member={member} --role=roles/pubsub.publisher"
    )
    assert "has no role on topic" in caplog.text

    transport.iam_policies[topic] = {"roles/pubsub.publisher": {member}}
    step = provisioning.plan(transport, wanted).steps[-1]
    assert step.details[-1] == (
        f"service agent {agent} may publish to topic {topic} (roles/pubsub.publisher)"
    )


@pytest.fixture
def subs_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str) -> Iterator[str]:
    """A module declaring one bucket subscription, importable by ``relay-cli --subs``."""
    for var in list(os.environ):
        if var.startswith("RELAY_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("RELAY_GC_PROJECT_ID", PROJECT)
    name = f"storage_plan_subs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from relay.contrib.storage import bucket_sub\n\n"
        f"@bucket_sub({bucket!r}, events=['OBJECT_FINALIZE'])\n"
        "def on_upload(obj, **attrs):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    path = list(sys.path)
    yield name
    sys.path[:] = path
    sys.modules.pop(name, None)
    relay.reset()


def test_relay_cli_plan_shows_the_notification_step(
    pubsub_emulator: Any, gcs: NotificationsServer, bucket: str, subs_module: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = f"gcs-{bucket}-finalize"
    head = f"notification gs://{bucket} -> {topic}"
    assert main(["plan", "--check", "--subs", subs_module]) == EXIT_DIFFERS
    out = capsys.readouterr().out
    assert (
        f"+ {head}\n    events: OBJECT_FINALIZE\n    payload_format: JSON_API_V1\n"
        f"    custom_attributes: relay-handler={subs_module}.on_upload, "
        f"relay-subscription={topic}\n"
        f"    service agent {gcs.service_agent} will need roles/pubsub.publisher on topic "
        f"{topic} once it exists\n"
    ) in out
    assert "Plan: 3 to create, 0 to update, 0 conflict(s), 0 unchanged." in out

    from relay.discovery import discover

    settings = Settings.load()
    relay.Worker(discover(".", [subs_module], settings=settings), settings=settings).setup()
    assert main(["plan", "--check", "--subs", subs_module]) == EXIT_OK
    out = capsys.readouterr().out
    grant = ("needs roles/pubsub.publisher" if pubsub_emulator.kind == "google"
             else f"has no role on topic {topic}")
    assert f"= {head}\n    service agent {gcs.service_agent} {grant}" in out
    assert "Plan: 0 to create, 0 to update, 0 conflict(s), 3 unchanged." in out

    # Without a Storage endpoint, the step is not checked: no difference, and said so.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert main(["plan", "--check", "--subs", subs_module]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"? {head}\n    not checked: the Pub/Sub emulator ({pubsub_emulator.address})" in out
    assert "Plan: 0 to create, 0 to update, 0 conflict(s), 2 unchanged, 1 not checked." in out


def test_an_unreachable_storage_endpoint_fails_within_admin_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        settings = Settings.load(
            {"GC_PROJECT_ID": PROJECT, "TRANSPORT": "memory", "ADMIN_TIMEOUT": 1}, environ={}
        )
        worker = relay.Worker(
            [declare("relay-uploads", "on_upload")], settings=settings,
            transport=MemoryTransport(),
        )
        started = time.monotonic()
        with pytest.raises(ProvisioningError) as error:
            worker.setup()
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert message.startswith("listing the notifications of bucket 'relay-uploads' failed: ")
    assert message.endswith(
        f"Cloud Storage at {endpoint} did not answer within ADMIN_TIMEOUT: check the network "
        "or STORAGE_EMULATOR_HOST, or raise ADMIN_TIMEOUT"
    )


def test_a_refusal_from_cloud_storage_is_a_provisioning_error_quoting_it(
    monkeypatch: pytest.MonkeyPatch, setup: Callable[..., list[ProvisionResult]],
) -> None:
    """The per-event-type limit is Cloud Storage's to apply; relay reports its refusal."""
    with NotificationsServer(per_event_limit=10) as gcs:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
        gcs.add_bucket("relay-busy-bucket")
        for n in range(10):
            gcs.add_notification(
                "relay-busy-bucket", topic=topic_ref("audit"), event_types=["OBJECT_FINALIZE"],
                object_name_prefix=f"p{n}/",
            )
        with pytest.raises(ProvisioningError) as error:
            setup([declare("relay-busy-bucket", "on_upload")])
    message = str(error.value)
    assert message.startswith(
        "creating notification gs://relay-busy-bucket -> gcs-relay-busy-bucket-finalize "
        "failed: BadRequest: 400 POST "
    )
    assert "Bucket relay-busy-bucket already has 10 notification configurations for " \
        "OBJECT_FINALIZE, the maximum." in message
    assert message.endswith(
        "Cloud Storage allows 100 notification configurations per bucket, 10 per event type, "
        "and needs its service agent to have roles/pubsub.publisher on the topic"
    )
