"""Bucket subscriptions handling Cloud Storage notifications, on the Pub/Sub emulator.

The messages are published with the attributes and payload Cloud Storage
documents for ``payloadFormat=JSON_API_V1``
(https://cloud.google.com/storage/docs/pubsub-notifications): the object
resource as JSON, and ``notificationConfig``, ``eventType``, ``payloadFormat``,
``bucketId``, ``objectId``, ``objectGeneration``, ``eventTime`` as attributes,
plus the notification's custom attributes.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import relay
from relay.contrib.storage import bucket_sub
from relay.message import Action, Message, Outcome, Status
from relay.subscription import Subscription


class Outcomes(relay.BaseMiddleware):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[dict[str, str], Outcome]] = []

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        with self.lock:
            self.seen.append((dict(message.attributes), outcome))


def object_resource(bucket: str, name: str, generation: str) -> dict[str, Any]:
    """An object resource as the JSON API returns it (the JSON_API_V1 payload)."""
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{generation}",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{name}",
        "name": name,
        "bucket": bucket,
        "generation": generation,
        "metageneration": "1",
        "contentType": "image/png",
        "timeCreated": "2026-12-04T10:00:00.000Z",
        "updated": "2026-12-04T10:00:00.000Z",
        "storageClass": "STANDARD",
        "size": "1024",
        "md5Hash": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "crc32c": "AAAAAA==",
        "etag": "CKih16GjycICEAE=",
    }


def notification(
    bucket: str, name: str, event: str, generation: str = "1733306400000000"
) -> tuple[bytes, dict[str, str]]:
    attributes = {
        "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/7",
        "eventType": event,
        "payloadFormat": "JSON_API_V1",
        "bucketId": bucket,
        "objectId": name,
        "objectGeneration": generation,
        "eventTime": "2026-12-04T10:00:00.123456Z",
        "relay-subscription": "gcs-uploads-finalize",
        "relay-handler": "tests.contrib.test_storage_handling.on_upload",
    }
    return json.dumps(object_resource(bucket, name, generation)).encode(), attributes


def test_the_handler_gets_the_object_and_attributes_and_other_events_are_skipped(
    make_pubsub_transport: Callable[..., Any],
    wait_for: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = f"relay-uploads-{uuid.uuid4().hex[:8]}"
    calls: list[tuple[Any, dict[str, Any]]] = []

    @bucket_sub(bucket, events=["OBJECT_FINALIZE"], object_name_prefix="incoming/")
    def on_upload(obj: Any, **attrs: Any) -> None:
        calls.append((obj, attrs))

    outcomes = Outcomes()
    transport, wire = make_pubsub_transport(middleware=[outcomes])
    worker = relay.Worker([on_upload], settings=transport.settings, transport=transport)
    with caplog.at_level(logging.INFO, logger="relay.contrib.storage"):
        worker.start()
    try:
        # No Storage endpoint under the Pub/Sub emulator: the notification step is
        # skipped, loudly, and the topic and subscription are there all the same.
        assert f"notification gs://{bucket} -> gcs-{bucket}-finalize not provisioned: the " \
            "Pub/Sub emulator" in caplog.text
        topic = f"gcs-{bucket}-finalize"
        sent = [
            notification(bucket, "incoming/cat.png", "OBJECT_FINALIZE"),
            notification(bucket, "incoming/cat.png", "OBJECT_DELETE"),  # not asked for
            notification(bucket, "outgoing/dog.png", "OBJECT_FINALIZE"),  # outside the prefix
            notification("another-bucket", "incoming/cat.png", "OBJECT_FINALIZE"),
        ]
        for data, attributes in sent:
            transport.publish(topic, data, attributes).result(timeout=10)

        wait_for(lambda: len(outcomes.seen) == 4, what="four outcomes")
        by_event = {
            (a["bucketId"], a["eventType"], a["objectId"]): o.status for a, o in outcomes.seen
        }
        assert by_event == {
            (bucket, "OBJECT_FINALIZE", "incoming/cat.png"): Status.SUCCESS,
            (bucket, "OBJECT_DELETE", "incoming/cat.png"): Status.SKIPPED,
            (bucket, "OBJECT_FINALIZE", "outgoing/dog.png"): Status.SKIPPED,
            ("another-bucket", "OBJECT_FINALIZE", "incoming/cat.png"): Status.SKIPPED,
        }
        assert all(o.action is Action.ACK for _, o in outcomes.seen)
        wait_for(lambda: wire.acks(on_upload.name) == 4, what="four acks on the wire")
        assert wire.nacks(on_upload.name) == 0

        ((obj, attrs),) = calls
        assert obj == object_resource(bucket, "incoming/cat.png", "1733306400000000")
        assert attrs["eventType"] == "OBJECT_FINALIZE"
        assert attrs["bucketId"] == bucket
        assert attrs["objectId"] == "incoming/cat.png"
        assert attrs["objectGeneration"] == "1733306400000000"
        assert attrs["payloadFormat"] == "JSON_API_V1"
        assert attrs["eventTime"] == "2026-12-04T10:00:00.123456Z"
        assert attrs["notificationConfig"] == f"projects/_/buckets/{bucket}/notificationConfigs/7"
    finally:
        worker.stop(timeout=5)
