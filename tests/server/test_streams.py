"""When a streaming pull ends, and the server as a process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from google.cloud import pubsub_v1

from relay.server import PubSubServer, ServerError
from tests.server.conftest import PROJECT, Clients, wait_for

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from google.cloud import pubsub_v1
    subscriber = pubsub_v1.SubscriberClient()
    def hold(message):
        print("got", message.data.decode(), flush=True)
    subscriber.subscribe(sys.argv[1], hold)
    time.sleep(120)
    """
)


def test_a_killed_clients_stream_takes_no_more_messages(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    clients.publisher.publish(topic, b"held").result()
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": clients.address}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, sub], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "got held"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        time.sleep(0.3)
        for i in range(10):
            clients.publisher.publish(topic, b"after-%d" % i)
        clients.publisher.publish(topic, b"after-last").result()
        seen: list[bytes] = []

        def ack(message: Any) -> None:
            seen.append(message.data)
            message.ack()

        future = clients.subscriber.subscribe(sub, ack)
        try:
            # Had the dead stream stayed open it would hold these for a lease or more.
            assert wait_for(lambda: len(seen) >= 11, 3.0), seen
        finally:
            future.cancel()
        assert b"held" not in seen  # still leased to the dead client until its deadline
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_half_closed_stream_ends(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)
    started = time.monotonic()
    initial = pubsub_v1.types.StreamingPullRequest(
        subscription=sub, stream_ack_deadline_seconds=10
    )
    responses = clients.subscriber.streaming_pull(requests=iter([initial]))
    assert list(responses) == []
    assert time.monotonic() - started < 2.0


def test_deleting_a_subscription_ends_its_streams_with_not_found(clients: Clients) -> None:
    from google.api_core import exceptions as gexc

    topic = clients.topic()
    sub = clients.subscription(topic)
    initial = pubsub_v1.types.StreamingPullRequest(
        subscription=sub, stream_ack_deadline_seconds=10
    )
    gate = threading.Event()

    def requests() -> Any:
        yield initial
        gate.wait(10)

    responses = clients.subscriber.streaming_pull(requests=requests())
    threading.Timer(0.3, clients.subscriber.delete_subscription, kwargs={"subscription": sub}
                    ).start()
    try:
        with pytest.raises(gexc.NotFound, match="Resource not found"):
            list(responses)
    finally:
        gate.set()


def test_stopping_the_server_ends_its_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    server = PubSubServer().start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.address)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, "stopping")
    sub = subscriber.subscription_path(PROJECT, "stopping")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    future = subscriber.subscribe(sub, lambda message: message.ack())
    time.sleep(0.3)
    started = time.monotonic()
    server.stop(grace=0.5)
    server.stop()  # idempotent
    assert time.monotonic() - started < 3.0
    future.cancel()
    subscriber.close()


def test_server_refuses_a_remote_host_unless_allowed() -> None:
    with pytest.raises(ServerError, match=r"loopback only.*allow_remote"):
        PubSubServer(host="0.0.0.0")
    with PubSubServer(host="0.0.0.0", allow_remote=True) as server:
        assert server.port > 0 and server.address == f"0.0.0.0:{server.port}"


def test_python_m_relay_server_prints_its_address_and_exits_0_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "relay.server", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"relay Pub/Sub server listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()


def test_python_m_relay_server_refuses_a_remote_host() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relay.server", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr and "no authentication" in done.stderr
