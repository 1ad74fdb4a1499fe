"""Tasks on the Pub/Sub emulator: .delay() to a result over Pub/Sub replies, a task
triggered by the gcloud CLI, the reply subscription's life, and a delayed task held
past its ack deadline without using up a delivery attempt."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc

import relay
from relay import TaskFailed, TaskStatus, UnrecoverableError, task
from relay.replies import PubSubReplies
from relay.results import results_backend
from tests.conftest import EMULATOR_PROJECT

pytestmark = pytest.mark.emulator

seen: list[tuple[str, Any]] = []
_lock = threading.Lock()


@task
def add(x: int, y: int) -> int:
    with _lock:
        seen.append(("add", (x, y)))
    return x + y


@task
def refuse(order: int) -> None:
    raise UnrecoverableError(f"order {order} no longer exists")


@task(ack_deadline=10, dead_letter_topic="tasks-dead-letter", max_delivery_attempts=5)
def later(label: str) -> float:
    with _lock:
        seen.append(("later", label))
    return time.time()


@pytest.fixture
def configure(
    pubsub_emulator: Any, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., relay.App]]:
    """``configure(**settings)``: the process-wide app on the emulator (a caller), with
    a fresh TOPIC_PREFIX; plus ``worker(tasks)``, a separate Worker as another process
    would run it. Everything is stopped and reset afterwards."""
    workers: list[relay.Worker] = []
    seen.clear()

    def make(**overrides: Any) -> relay.App:
        settings = dict(
            GC_PROJECT_ID=EMULATOR_PROJECT, RESULTS="pubsub", DEFAULT_RETRY_POLICY=None,
            TOPIC_PREFIX=unique_name("t") + "-", MIDDLEWARE=[], **overrides,
        )
        app = relay.configure(settings)
        worker = relay.Worker([add, refuse, later], settings=app.settings)
        workers.append(worker)
        worker.start()
        return app

    yield make
    for worker in workers:
        worker.stop(timeout=5)
    relay.reset()


def _gcloud_publish(emulator_address: str, topic: str, data: str, tmp: Path) -> str:
    """``gcloud pubsub topics publish`` against the emulator, with a throwaway config."""
    gcloud = shutil.which("gcloud")
    assert gcloud, "the gcloud CLI is needed to publish as a non-relay client would"
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{emulator_address}/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": EMULATOR_PROJECT,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    done = subprocess.run(
        [gcloud, "pubsub", "topics", "publish", topic, f"--message={data}"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(90)
def test_delay_to_result_over_pubsub_replies_and_a_task_sent_by_gcloud(
    configure: Callable[..., relay.App], pubsub_emulator: Any, admin: Any, tmp_path: Path,
    wait_for: Callable[..., Any],
) -> None:
    app = configure()
    prefix = app.settings.topic_prefix

    handle = add.delay(2, 3)
    assert handle.result(timeout=30) == 5
    assert handle.status() is TaskStatus.SUCCEEDED
    failing = refuse.delay(7)
    with pytest.raises(TaskFailed, match=r"relay\.errors\.UnrecoverableError: order 7 no longer"):
        failing.result(timeout=30)

    # The reply subscription relay made for this process, as Pub/Sub has it.
    backend = results_backend(app.middleware)
    assert isinstance(backend, PubSubReplies) and backend.subscription
    path = admin.subscriber.subscription_path(EMULATOR_PROJECT, backend.subscription)
    reply = admin.subscriber.get_subscription(subscription=path)
    assert reply.topic.endswith(f"/topics/{prefix}relay-results")
    assert reply.filter == f'attributes.relay_reply_to = "{backend.address}"'
    assert reply.expiration_policy.ttl.total_seconds() == 24 * 3600
    assert reply.message_retention_duration.total_seconds() == 600

    # Anything that publishes the documented JSON triggers a task: gcloud (REST) on
    # Google's emulator; relay's server speaks only gRPC, so there google's own client.
    body = '{"args": [40], "kwargs": {"y": 2}}'
    if pubsub_emulator.kind == "google":
        out = _gcloud_publish(pubsub_emulator.address, f"{prefix}{add.topic}", body, tmp_path)
        assert "messageIds" in out
    else:
        topic = admin.publisher.topic_path(EMULATOR_PROJECT, f"{prefix}{add.topic}")
        assert admin.publisher.publish(topic, body.encode()).result(timeout=30)
    wait_for(lambda: ("add", (40, 2)) in seen, timeout=30, what="the hand-sent task to run")

    relay.reset()  # closes the app: the reply subscription is deleted
    with pytest.raises(gexc.NotFound):
        admin.subscriber.get_subscription(subscription=path)


@pytest.mark.timeout(90)
def test_a_delayed_task_is_held_past_its_ack_deadline_on_its_first_delivery(
    configure: Callable[..., relay.App],
) -> None:
    app = configure()
    sent = time.time()
    handle = later.apply_async(("held",), countdown=12)  # ack deadline: 10 s
    time.sleep(1)
    assert handle.status() is TaskStatus.PENDING
    ran_at = handle.result(timeout=45)
    assert ran_at - sent >= 12
    assert seen == [("later", "held")]  # once
    backend = results_backend(app.middleware)
    assert backend is not None
    record = backend.get(handle.id)
    # The subscription has a dead-letter policy, so Pub/Sub counts deliveries:
    # the lease was extended while it waited, and it was never delivered again.
    assert record is not None and record.attempt == 1
