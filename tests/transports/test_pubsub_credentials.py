"""How PubSubTransport finds credentials: never with the emulator, loudly otherwise.

None of these tests reaches the network: bad credentials fail while the client
is built, and the ADC case points ``GOOGLE_APPLICATION_CREDENTIALS`` at a file
that does not exist, which google-auth rejects before trying anything else.
"""

from __future__ import annotations

import json

import pytest

import relay
from relay.transports.pubsub import PubSubTransport


@pytest.fixture
def no_emulator(monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)


class _Hooks(relay.BaseMiddleware):
    def __init__(self) -> None:
        self.failures: list[BaseException] = []

    def post_publish_failure(self, message, exception, elapsed):
        self.failures.append(exception)


def _transport(**settings) -> PubSubTransport:
    return PubSubTransport(relay.Settings.load(gc_project_id="relay-tests", **settings))


def test_clients_are_built_lazily(no_emulator, tmp_path):
    # A broken setting does not fail construction, only first use.
    transport = _transport(gc_credentials_path=str(tmp_path / "missing.json"))
    transport.close()


def test_a_missing_credentials_file_names_the_setting(no_emulator, tmp_path):
    transport = _transport(gc_credentials_path=str(tmp_path / "missing.json"))
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_PATH") as raised:
        transport.ensure_topic("orders")
    assert "service-account key file" in str(raised.value)


def test_an_invalid_credentials_file_names_the_setting(no_emulator, tmp_path):
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "project_id": "p"}))
    transport = _transport(gc_credentials_path=str(key))
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_PATH"):
        transport.subscribe("orders", lambda m: None, relay.Settings().flow_control)


def test_invalid_credentials_json_names_the_setting(no_emulator):
    transport = _transport(gc_credentials_json=json.dumps({"type": "service_account"}))
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_JSON"):
        transport.ensure_topic("orders")
    # A configuration error is raised by publish() itself, not hidden in a future,
    # so `relay-cli publish` exits 2; post_publish_failure fires once with it (every
    # pre_publish gets its post hook, so a tracing span is ended).
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_JSON"):
        transport.publish("orders", b"{}", {})
    recorder = _Hooks()
    publisher = relay.Publisher(
        transport, settings=transport.settings, middleware=relay.MiddlewareChain([recorder])
    )
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_JSON"):
        publisher.publish("orders", {"n": 1})
    [failure] = recorder.failures
    assert isinstance(failure, relay.ConfigurationError)


def test_missing_application_default_credentials_say_how_to_fix(no_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
    transport = _transport()
    with pytest.raises(relay.ConfigurationError) as raised:
        transport.ensure_topic("orders")
    message = str(raised.value)
    assert "GC_CREDENTIALS_PATH" in message and "PUBSUB_EMULATOR_HOST" in message


def test_with_the_emulator_no_credentials_are_loaded(pubsub_emulator, tmp_path, unique_name):
    # The credentials setting points nowhere; with PUBSUB_EMULATOR_HOST set it
    # is not even read, and everything works.
    transport = _transport(gc_credentials_path=str(tmp_path / "missing.json"))
    try:
        topic = unique_name("anonymous")
        assert transport.ensure_topic(topic) is True
        assert transport.publish(topic, b"{}", {}).result(timeout=10)
    finally:
        transport.close()
