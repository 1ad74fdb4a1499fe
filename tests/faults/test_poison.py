"""Fault test 3: a poison message among good ones, on the emulator.

The good messages are all processed; the poison one is delivered
``max_delivery_attempts`` times, then Pub/Sub moves it to the dead-letter topic
(kept by the subscription relay creates there); the worker never dies.
"""

from __future__ import annotations

import threading
from typing import Any

import relay
from relay.transports.base import FlowControl

GOOD = 40
MAX_ATTEMPTS = 5


def test_poison_message_lands_on_the_dead_letter_topic(
    make_transport: Any, unique_name: Any, wait_for: Any
) -> None:
    topic = unique_name("poison")
    good: set[int] = set()
    poison_attempts: list[int | None] = []
    lock = threading.Lock()

    @relay.sub(
        topic, dead_letter_topic=f"{topic}-dead", max_delivery_attempts=MAX_ATTEMPTS,
        retry_policy=relay.RetryPolicy(0.1, 0.5),
    )
    def handle(data: Any, delivery_attempt: int | None = None, **attrs: Any) -> None:
        if data.get("poison"):
            with lock:
                poison_attempts.append(delivery_attempt)
            raise ValueError("this message can never be processed")
        with lock:
            good.add(data["n"])

    transport, wire = make_transport()
    worker = relay.Worker([handle], settings=transport.settings, transport=transport)
    worker.setup()
    transport.publish(topic, b'{"poison": true}', {"kind": "poison"}).result(10)
    for n in range(GOOD):
        transport.publish(topic, f'{{"n": {n}}}'.encode(), {}).result(10)
    worker.start()
    try:
        wait_for(lambda: len(good) == GOOD, timeout=30, what="every good message")
        dead: list[Any] = []
        stream = transport.subscribe(
            f"{topic}-dead", lambda m: (dead.append(m), m.ack()), FlowControl()
        )
        try:
            wait_for(lambda: dead, timeout=60, what="the poison message on the dead-letter topic")
        finally:
            stream.close(timeout=10)
        status = worker.status()
    finally:
        worker.stop(timeout=10)

    [letter] = dead
    assert letter.data == b'{"poison": true}' and letter.attributes["kind"] == "poison"
    assert letter.attributes["CloudPubSubDeadLetterSourceSubscription"] == handle.name
    assert letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == str(MAX_ATTEMPTS)
    # Delivered exactly max_delivery_attempts times, numbered by Pub/Sub.
    assert poison_attempts == list(range(1, MAX_ATTEMPTS + 1))
    assert wire.nacks(handle.name) == MAX_ATTEMPTS
    # The worker kept going: supervision alive, the stream never failed.
    assert status["supervisor_alive"] and status["started"]
    assert [s["state"] for s in status["subscriptions"]] == ["open"]
    assert [s["failures"] for s in status["subscriptions"]] == [0]
