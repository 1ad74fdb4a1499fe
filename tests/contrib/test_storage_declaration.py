"""``@bucket_sub`` at declaration: what it builds, and every bad input it refuses."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from relay import provisioning
from relay.contrib.storage import (
    BucketSubscription,
    NotificationFilter,
    NotificationSpec,
    bucket_sub,
)
from relay.contrib.storage.client import EXTRA, missing_extra
from relay.errors import ConfigurationError
from relay.settings import Settings


def on_upload(obj: Any, **attrs: Any) -> None:
    pass


def test_a_bucket_subscription_is_a_subscription_with_a_notification_spec() -> None:
    sub = bucket_sub("my-uploads", events=["OBJECT_DELETE", "OBJECT_FINALIZE"])(on_upload)
    assert isinstance(sub, BucketSubscription)
    # Events in Cloud Storage's order, whatever the order given.
    assert sub.notification == NotificationSpec(
        "my-uploads", ("OBJECT_FINALIZE", "OBJECT_DELETE"), "", "JSON_API_V1"
    )
    assert (sub.topic, sub.name) == ("gcs-my-uploads-finalize-delete",) * 2
    every = bucket_sub("my-uploads")(on_upload)
    assert (every.topic, every.notification.event_types) == ("gcs-my-uploads", ())

    settings = Settings.load({"TOPIC_PREFIX": "dev-", "SUB_PREFIX": "shop"}, environ={})
    resolved = sub.resolve(settings)
    assert (resolved.full_topic, resolved.name) == (
        "dev-gcs-my-uploads-finalize-delete", "shop-dev-gcs-my-uploads-finalize-delete",
    )
    assert resolved.notification == sub.notification


def test_the_event_filter_passes_only_what_was_asked_for() -> None:
    sub = bucket_sub("b-1", events="OBJECT_FINALIZE", object_name_prefix="in/")(on_upload)
    base = {"eventType": "OBJECT_FINALIZE", "bucketId": "b-1", "objectId": "in/x"}
    assert sub.accepts(base)
    assert not sub.accepts({**base, "eventType": "OBJECT_DELETE"})
    assert not sub.accepts({**base, "bucketId": "b-2"})
    assert not sub.accepts({**base, "objectId": "out/x"})
    assert not sub.accepts({"type": "not a notification"})
    # A user's filter_by runs too, after relay's.
    picky = bucket_sub("b-1", filter_by=lambda **a: a.get("objectId") != "in/skip")(on_upload)
    assert picky.accepts(base) and not picky.accepts({**base, "objectId": "in/skip"})


def test_with_options_keeps_the_bucket_and_its_filter() -> None:
    sub = bucket_sub("my-uploads", events=["OBJECT_FINALIZE"])(on_upload)
    changed = sub.with_options(ack_deadline=30, events=["OBJECT_DELETE"])
    assert isinstance(changed, BucketSubscription)
    assert changed.ack_deadline == 30
    assert changed.topic == "gcs-my-uploads-delete"
    assert [type(f) for f in changed.filters] == [NotificationFilter]


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (["OBJECT_FINALISE"], "unknown Cloud Storage event type 'OBJECT_FINALISE'; did you mean "
         "'OBJECT_FINALIZE'? the event types are OBJECT_FINALIZE, OBJECT_METADATA_UPDATE, "
         "OBJECT_DELETE, OBJECT_ARCHIVE"),
        (["finalize"], "unknown Cloud Storage event type 'finalize'; did you mean "
         "'OBJECT_FINALIZE'?"),
        ([], "events=[] selects no event at all; leave events out to receive every event type"),
    ],
)
def test_an_unknown_event_type_is_refused_at_declaration(events: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        bucket_sub("my-uploads", events=events)
    error_text = str(error.value)
    assert error_text.startswith("@bucket_sub('my-uploads'): ")
    assert message in error_text


@pytest.mark.parametrize(
    ("bucket", "message"),
    [
        ("gs://my-uploads", "give the bucket's name without gs://, like 'my-uploads'"),
        ("My-Uploads", "bucket names are lowercase; did you mean 'my-uploads'?"),
        ("ab", "is 2 characters long: a bucket name has 3 to 63 characters"),
        ("a" * 64, "is 64 characters long"),
        ("a" * 64 + ".example.com", "each dot-separated part at most 63"),
        ("-uploads", "starts and ends with a letter or digit"),
        ("my uploads", "holds only lowercase letters, digits, '-', '_' and '.'"),
        ("192.168.5.4", "a bucket name cannot be an IP address"),
        ("goog-uploads", "cannot start with 'goog'"),
        ("my-g00gle-files", "or contain 'google' or a close misspelling of it"),
        (42, "needs the bucket's name as a string"),
    ],
)
def test_a_bad_bucket_name_is_refused_at_declaration(bucket: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        bucket_sub(bucket)
    assert message in str(error.value)


def test_names_cloud_storage_accepts_are_accepted() -> None:
    for bucket in ("abc", "my_uploads-2", "a" * 63, "uploads.example.com", "0-numbers-first"):
        assert bucket_sub(bucket)(on_upload).notification.bucket == bucket


def test_payload_format_none_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigurationError) as error:
        bucket_sub("my-uploads", payload_format="NONE")
    assert str(error.value) == (
        "@bucket_sub('my-uploads'): payload_format='NONE' makes Cloud Storage send an empty "
        "payload, and relay decodes every message as JSON, so each event would count as "
        "undecodable; use payload_format='JSON_API_V1' (the default): the object resource as JSON"
    )


def test_a_handler_that_cannot_take_the_attributes_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"does not accept \*\*kwargs"):
        bucket_sub("my-uploads")(lambda obj: None)


def test_two_bucket_subscriptions_feeding_one_topic_are_refused() -> None:
    first = bucket_sub("my-uploads", topic="uploads")(on_upload)

    def on_upload_too(obj: Any, **attrs: Any) -> None:
        pass

    second = bucket_sub("my-uploads", topic="uploads", suffix="copy")(on_upload_too)
    settings = Settings.load({"GC_PROJECT_ID": "p-1234"}, environ={})
    with pytest.raises(ConfigurationError) as error:
        provisioning.desired([first.resolve(settings), second.resolve(settings)], settings)
    assert str(error.value) == (
        f"notification gs://my-uploads -> uploads is asked for by both {__name__}.on_upload "
        f"and {__name__}.test_two_bucket_subscriptions_feeding_one_topic_are_refused."
        "<locals>.on_upload_too; give one of them its own topic=..."
    )


def test_without_google_cloud_storage_provisioning_names_the_extra() -> None:
    """In a subprocess where ``google.cloud.storage`` cannot be imported (a None
    entry in ``sys.modules``, Python's documented way to block an import)."""
    script = textwrap.dedent("""
        import sys
        sys.modules["google.cloud.storage"] = None
        import relay
        from relay.contrib.storage import bucket_sub
        from relay.transports.memory import MemoryTransport

        @bucket_sub("my-uploads")
        def on_upload(obj, **attrs):
            pass

        settings = relay.Settings.load(
            {"GC_PROJECT_ID": "p-1234", "TRANSPORT": "memory"}, environ={}
        )
        worker = relay.Worker([on_upload], settings=settings, transport=MemoryTransport())
        try:
            worker.setup()
        except relay.ConfigurationError as exc:
            print(exc)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={"STORAGE_EMULATOR_HOST": "127.0.0.1:9", "PATH": "/usr/bin:/bin"}, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(missing_extra(ModuleNotFoundError(
        "import of google.cloud.storage halted; None in sys.modules"
    )))
    assert f"pip install '{EXTRA}'" in done.stdout


def test_the_testing_example_in_the_docs_works() -> None:
    """docs/storage-notifications.md, "Locally and in tests", on the memory transport."""
    import json

    from relay.message import Status
    from relay.testing import memory_app

    seen: list[tuple[str, str]] = []

    @bucket_sub("my-uploads", events=["OBJECT_FINALIZE"])
    def on_upload(obj: Any, **attrs: Any) -> None:
        seen.append((obj["name"], attrs["eventType"]))

    with memory_app() as env:
        attrs = {"eventType": "OBJECT_FINALIZE", "bucketId": "my-uploads",
                 "objectId": "cat.png", "objectGeneration": "1",
                 "payloadFormat": "JSON_API_V1"}
        obj = {"name": "cat.png", "bucket": "my-uploads", "size": "1024"}
        env.transport.publish(on_upload.topic, json.dumps(obj).encode(), attrs)
        (outcome,) = env.deliver([on_upload])
        assert outcome.status.value == "success"
        deleted = {**attrs, "eventType": "OBJECT_DELETE"}
        env.transport.publish(on_upload.topic, json.dumps(obj).encode(), deleted)
        (skipped,) = env.deliver([on_upload])
    assert skipped.status is Status.SKIPPED
    assert seen == [("cat.png", "OBJECT_FINALIZE")]
