"""An unreachable Pub/Sub endpoint at start: a clear, bounded failure, no hang."""

from __future__ import annotations

from typing import Any

import pytest

import relay
from relay.emulator import free_port
from relay.transports.pubsub import PubSubTransport


def handler(data: Any, **attrs: Any) -> None: ...


def test_provisioning_against_an_unreachable_endpoint_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", address)
    settings = relay.Settings.load(environ={}, gc_project_id="relay-tests", admin_timeout=1)
    transport = PubSubTransport(settings)
    worker = relay.Worker([relay.sub("orders")(handler)], settings=settings, transport=transport)
    try:
        with pytest.raises(relay.TransportError) as info:
            worker.setup()
    finally:
        transport.close()
    text = str(info.value)
    assert "creating topic 'orders' failed" in text
    assert f"Pub/Sub at {address} did not answer within ADMIN_TIMEOUT" in text
    assert "raise ADMIN_TIMEOUT" in text
