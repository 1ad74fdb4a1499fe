"""Health probes of a worker on the emulator whose connection to Pub/Sub breaks and heals,
or whose streaming pull keeps failing.

The worker's subscriber talks to the emulator through ``TcpProxy``
(``tests/faults/proxy.py``), which the test cuts and restores: cut, it closes
every live connection and resets new ones as soon as they are accepted, as a
network outage would.

The last test has no proxy: its worker's channel is too small for a message,
so every streaming pull that carries it fails, and the probes must say so.

What these tests prove is what the probes report. They do not wait for a
message published after the outage: on the emulator, google's streaming pull
(relay or not) delivered such a message only 60 s or more after it was sent
(measured), although the stream was connected again.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import orjson
import pytest
from google.cloud import pubsub_v1
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from relay import Settings, Worker, sub
from relay.emulator import Emulator
from relay.health import HealthServer
from relay.transports.pubsub import PubSubTransport
from tests.conftest import EMULATOR_PROJECT
from tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.emulator


@pytest.fixture
def proxy(pubsub_emulator: Emulator) -> Iterator[TcpProxy]:
    with TcpProxy(pubsub_emulator.address) as proxy:
        yield proxy


@pytest.fixture
def proxied_transport(proxy: TcpProxy) -> Iterator[PubSubTransport]:
    """A transport whose subscriber (streams and subscription admin) goes through ``proxy``."""
    channel = grpc.insecure_channel(proxy.address)
    subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    settings = Settings.load(gc_project_id=EMULATOR_PROJECT, middleware=[])
    transport = PubSubTransport(settings, subscriber_client=subscriber)
    yield transport
    transport.close()


def get(server: HealthServer, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def state(body: dict[str, Any]) -> str:
    [only] = body["subscriptions"]
    return str(only["state"])


def consuming_worker(
    unique_name: Callable[[str], str], transport: PubSubTransport
) -> tuple[Worker, list[int], str]:
    """A worker on ``transport`` for a fresh topic; the list collects each message's ``n``."""
    received: list[int] = []
    topic = unique_name("health")

    def on_message(data: Any, **attrs: Any) -> None:
        received.append(data["n"])

    subscription = sub(topic=topic)(on_message)
    worker = Worker([subscription], settings=transport.settings, transport=transport)
    return worker, received, topic


def test_a_worker_that_cannot_reach_pubsub_is_not_ready_until_it_can(
    proxy: TcpProxy, proxied_transport: PubSubTransport, unique_name: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    worker, _, _ = consuming_worker(unique_name, proxied_transport)
    worker.setup()  # provisioned while the network is fine
    proxy.cut()
    with HealthServer(worker, port=0) as health:
        try:
            worker.start()
            # The stream is open but its connection cannot come up.
            wait_for(lambda: state(get(health, "/readyz")[1]) == "connecting", timeout=30,
                     what="the subscription to be reported as connecting")
            code, body = get(health, "/readyz")
            assert code == 503 and body["ok"] is False
            assert f"subscription {body['subscriptions'][0]['name']} is connecting" in (
                body["reasons"]
            )
            assert body["provisioned"] is True and body["started"] is True
            assert get(health, "/livez")[0] == 200  # far below the 120 s threshold
            assert proxy.stats().refused > 0  # the transport really tried, and was turned away

            proxy.restore()

            # Same worker, no restart: it connects and becomes ready.
            code, body = wait_for(
                lambda: (r := get(health, "/readyz"))[0] == 200 and r, timeout=60,
                what="/readyz to turn 200 once the network is back",
            )
            assert body["reasons"] == [] and state(body) == "open"
            assert get(health, "/livez")[0] == 200
            assert worker.started and not worker.status()["stopping"]
        finally:
            worker.stop(timeout=5)


def test_a_cut_connection_fails_readiness_then_liveness_past_the_threshold_and_heals(
    proxy: TcpProxy, proxied_transport: PubSubTransport, unique_name: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    worker, received, topic = consuming_worker(unique_name, proxied_transport)
    with HealthServer(worker, port=0, failure_threshold=2.0) as health:
        try:
            worker.start()
            wait_for(lambda: get(health, "/readyz")[0] == 200, timeout=30,
                     what="/readyz to turn 200")
            proxied_transport.publish(topic, b'{"n": 1}', {}).result(30)
            wait_for(lambda: received == [1], timeout=30, what="the first message")

            proxy.cut()  # the network goes away under a running stream

            wait_for(lambda: get(health, "/readyz")[0] == 503, timeout=30,
                     what="/readyz to turn 503 after the cut")
            code, live = wait_for(
                lambda: (r := get(health, "/livez"))[0] == 503 and r, timeout=30,
                what="/livez to turn 503 once the outage outlasts the threshold",
            )
            assert live["ok"] is False
            [entry] = live["subscriptions"]
            assert entry["state"] in ("connecting", "restarting")
            assert entry["unhealthy_for"] > 2.0
            assert "threshold 2 s" in live["reasons"][0]

            proxy.restore()

            wait_for(lambda: get(health, "/readyz")[0] == 200, timeout=60,
                     what="/readyz to turn 200 once the network is back")
            code, live = get(health, "/livez")
            assert code == 200 and live["reasons"] == []
            assert live["subscriptions"][0]["unhealthy_for"] is None
        finally:
            worker.stop(timeout=5)


#: The receive limit of the failing worker's channel, and a message over it.
SMALL_LIMIT = 1024 * 1024
OVER_LIMIT = 2_000_000


def test_a_stream_that_keeps_failing_is_logged_once_and_not_ready(
    pubsub_emulator: Emulator, unique_name: Callable[[str], str], wait_for: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every streaming pull that carries the message ends with RESOURCE_EXHAUSTED,
    # and google's client reopens it, silently: relay's own channels take 10 MB,
    # so the worker's channel here is built small. The message comes back to the
    # new stream each ACK_DEADLINE (10 s). STREAM_LIFETIME ends, within 5 s, the
    # broken streams the emulator would otherwise keep serving (and handing it to).
    settings = Settings.load(
        environ={}, gc_project_id=EMULATOR_PROJECT, middleware=[], ack_deadline=10,
        default_retry_policy="none", stream_lifetime=5,
    )
    channel = grpc.insecure_channel(
        pubsub_emulator.address, options=[("grpc.max_receive_message_length", SMALL_LIMIT)]
    )
    small = PubSubTransport(settings, subscriber_client=pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=channel)))
    publisher = PubSubTransport(settings)
    worker, received, topic = consuming_worker(unique_name, small)
    with HealthServer(worker, port=0) as health, \
            caplog.at_level(logging.WARNING, logger="relay.worker"):
        try:
            worker.start()
            wait_for(lambda: get(health, "/readyz")[0] == 200, timeout=30,
                     what="/readyz to turn 200")
            publisher.publish(topic, orjson.dumps({"n": 1, "pad": "x" * OVER_LIMIT}), {}).result(30)

            code, body = wait_for(
                lambda: (r := get(health, "/readyz"))[1]["subscriptions"][0]["state"] == "failing"
                and r, timeout=40, what="the subscription to be reported as failing",
            )
            assert code == 503
            name = body["subscriptions"][0]["name"]
            [reason] = body["reasons"]
            assert reason.startswith(f"subscription {name} is failing: RESOURCE_EXHAUSTED")
            assert "larger than max" in reason
            assert get(health, "/livez")[0] == 200  # far below the 120 s threshold
            [warning] = [m for r in caplog.records if "keeps failing" in (m := r.getMessage())]
            assert f"stream for {name} keeps failing: RESOURCE_EXHAUSTED" in warning
            assert received == []
        finally:
            worker.stop(timeout=5)
            small.close()
            publisher.close()
