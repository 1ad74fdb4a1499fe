"""A script that publishes without blocking and exits at once loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from google.cloud import pubsub_v1

from relay.emulator import Emulator

from ..conftest import EMULATOR_PROJECT

COUNT = 50


def test_batched_publishes_are_flushed_at_interpreter_exit(
    pubsub_emulator: Emulator, unique_name
) -> None:
    topic, subscription = unique_name("exit-flush"), unique_name("exit-flush-sub")
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(EMULATOR_PROJECT, topic)
    sub_path = subscriber.subscription_path(EMULATOR_PROJECT, subscription)
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(name=sub_path, topic=topic_path)

    script = textwrap.dedent(
        f"""
        import relay
        relay.configure(gc_project_id={EMULATOR_PROJECT!r}, middleware=[])
        for i in range({COUNT}):
            relay.publish({topic!r}, {{"n": i}})   # non-blocking, batched
        # no reset(), no future.result(): the interpreter exits right here
        """
    )
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=pubsub_emulator.address)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

    seen: set[bytes] = set()
    deadline = time.monotonic() + 20
    while len(seen) < COUNT and time.monotonic() < deadline:
        response = subscriber.pull(
            request={"subscription": sub_path, "max_messages": 100}, timeout=5
        )
        if response.received_messages:
            seen.update(m.message.data for m in response.received_messages)
            subscriber.acknowledge(
                request={
                    "subscription": sub_path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
    subscriber.close()
    assert len(seen) == COUNT, f"only {len(seen)} of {COUNT} messages arrived"
