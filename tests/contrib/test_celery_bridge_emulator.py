"""The Celery bridge end to end on Google's Pub/Sub emulator.

``publish_event`` -> Pub/Sub emulator -> relay Worker -> Celery's broker ->
a real Celery worker running the task with the arguments ``get_args`` gave;
the Pub/Sub message is acked on the wire only after Celery accepted the task.
"""

from __future__ import annotations

from typing import Any

import pytest

import relay
from relay.contrib.celery import CeleryBridge
from tests.contrib.test_celery_bridge import celery_worker, make_celery_app, result_of

pytestmark = pytest.mark.emulator


def test_publish_event_ends_as_a_celery_task_run_with_get_args_arguments(
    make_pubsub_transport, unique_name, wait_for
):
    transport, wire = make_pubsub_transport(middleware=[])
    celery_app = make_celery_app()
    sent: list[str] = []

    class TaskIds(relay.BaseMiddleware):
        def post_process_message_success(self, subscription: Any, message: Any,
                                         outcome: Any) -> None:
            sent.append(outcome.result)

    bridge = CeleryBridge.from_dict({
        "PUBSUB_EXCHANGE": unique_name("events"),
        "PUBSUB_QUEUE_NAME": unique_name("reports"),
        "PUBSUB_GET_CELERY_APP": lambda: celery_app,
        "PUBSUB_TASK_MAPPING": [{
            "routing_key": "orders.created",
            "task": "tests.echo",
            "should_schedule": lambda routing_key, body: body["total"] > 0,
            "get_args": lambda routing_key, body: (
                [body["id"]], {"total": body["total"], "key": routing_key},
            ),
        }],
    })
    previous = relay.set_app(relay.App(transport.settings, transport=transport))
    worker = relay.Worker(
        [bridge.subscription], settings=transport.settings, transport=transport,
        middleware=relay.MiddlewareChain([TaskIds()]),
    )
    try:
        with celery_worker(celery_app):
            worker.start()  # provisions the topic and the subscription named by the queue
            bridge.publish_event("orders.created", {"id": 42, "total": 9.5}, blocking=True)

            (task_id,) = wait_for(lambda: list(sent), what="the task to be sent", timeout=20)
            ran = result_of(celery_app, task_id)
    finally:
        worker.stop(timeout=5)
        relay.set_app(previous)

    assert ran["args"] == [42] and ran["kwargs"] == {"total": 9.5, "key": "orders.created"}
    name = bridge.config.queue_name
    assert worker.subscriptions[0].name == name
    wait_for(lambda: wire.acks(name) == 1, what="the ack on the wire")
    assert wire.nacks(name) == 0
