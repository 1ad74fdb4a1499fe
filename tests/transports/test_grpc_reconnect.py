"""``GrpcTransport`` across a server restart on the same port: the stream
reconnects by itself and reports the outage; a publish is retried until the
server is back, or fails once ``PUBLISHER_RETRY_TIMEOUT`` has passed."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions as gexc
from google.pubsub_v1 import types as gtypes

from relay.emulator import free_port
from relay.server import PubSubServer
from relay.settings import Settings
from relay.transports.base import FlowControl
from relay.transports.grpc import GrpcTransport
from tests.transports.test_contract import Inbox

PROJECT = "relay-grpc-reconnect"


def _server(port: int, topic: str = "", subscription: str = "") -> PubSubServer:
    """A server with the topic and subscription in place before it serves anyone."""
    server = PubSubServer(port=port)
    if topic:
        server.broker.create_topic(gtypes.Topic.pb()(name=f"projects/{PROJECT}/topics/{topic}"))
    if subscription:
        server.broker.create_subscription(gtypes.Subscription.pb()(
            name=f"projects/{PROJECT}/subscriptions/{subscription}",
            topic=f"projects/{PROJECT}/topics/{topic}",
        ))
    return server.start()


def _wait(predicate, timeout=20.0, what=""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


@pytest.fixture
def on_port(monkeypatch):
    port = free_port()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    made: list[GrpcTransport] = []
    servers: list[PubSubServer] = []

    def make(**settings):
        transport = GrpcTransport(
            Settings.load(environ={}, gc_project_id=PROJECT, middleware=[], **settings)
        )
        made.append(transport)
        return transport

    yield port, make, servers
    for transport in made:
        transport.close()
    for server in servers:
        server.stop(grace=0)


def test_the_stream_reconnects_after_the_server_restarts(on_port):
    port, make, servers = on_port
    servers.append(_server(port, "topic", "sub"))
    transport = make()
    inbox = Inbox()
    stream = transport.subscribe("sub", inbox, FlowControl())
    transport.publish("topic", b'{"n": 1}', {}).result(10)
    inbox.wait_for(1)[0].ack()
    assert stream.connected()

    servers[0].stop(grace=0)
    _wait(lambda: not stream.connected(), what="the outage to show")
    assert not stream.done()

    servers.append(_server(port, "topic", "sub"))  # in-memory: a fresh broker
    _wait(stream.connected, what="the stream to reconnect")
    transport.publish("topic", b'{"n": 2}', {}).result(10)
    second = inbox.wait_for(2)[1]
    assert second.data == b'{"n": 2}'
    assert second.ack_with_response().result(10) is None
    assert stream.failure() is None and stream.exception() is None
    stream.close(timeout=10)


def test_a_publish_is_retried_until_the_server_is_back(on_port):
    port, make, servers = on_port
    transport = make(publisher_retry_timeout=20)
    future = transport.publish("topic", b"{}", {})
    time.sleep(1.5)
    assert not future.done()
    servers.append(_server(port, "topic"))
    assert future.result(20)


def test_a_publish_fails_after_the_retry_timeout(on_port):
    _, make, _ = on_port
    transport = make(publisher_retry_timeout=1)
    started = time.monotonic()
    future = transport.publish("topic", b"{}", {})
    with pytest.raises(gexc.ServiceUnavailable):
        future.result(10)
    assert time.monotonic() - started < 5
