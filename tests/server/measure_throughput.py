"""Messages per second through one streaming pull (a measurement, not a test).

    uv run --frozen python tests/server/measure_throughput.py [N]

Starts ``python -m relay.server`` as its own process, publishes N messages
(default 100,000), then consumes them with google-cloud-pubsub's streaming pull
(one stream, each message acked in the callback) and prints the rate.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from google.cloud import pubsub_v1


def main(count: int) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "relay.server", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        os.environ["PUBSUB_EMULATOR_HOST"] = line.rsplit(" ", 1)[-1].strip()
        publisher = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000)
        )
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path("bench", "throughput")
        sub = subscriber.subscription_path("bench", "throughput")
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=60)
        started = time.perf_counter()
        futures = [publisher.publish(topic, b"x" * 100) for _ in range(count)]
        for future in futures:
            future.result()
        print(f"published {count:,} in {time.perf_counter() - started:.1f} s")
        done = threading.Event()
        received = 0
        lock = threading.Lock()
        first: list[float] = []

        def callback(message: pubsub_v1.subscriber.message.Message) -> None:
            nonlocal received
            message.ack()
            with lock:
                if not first:
                    first.append(time.perf_counter())
                received += 1
                if received >= count:
                    done.set()

        future = subscriber.subscribe(sub, callback)  # google's default flow control
        done.wait(300)
        elapsed = time.perf_counter() - first[0]
        future.cancel()
        print(f"received {received:,} in {elapsed:.1f} s: {received / elapsed:,.0f} messages/s "
              "on one stream")
    finally:
        server.terminate()
        print(f"server exit code {server.wait(10)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
