"""How PubSubTransport finds credentials: never with the emulator, loudly otherwise.

None of these tests reaches the network: bad credentials fail when the
settings are loaded or while the client is built, and the ADC case points
``GOOGLE_APPLICATION_CREDENTIALS`` at a file that does not exist, which
google-auth rejects before trying anything else.
"""

from __future__ import annotations

import json
import logging
import os
import traceback

import pytest

import relay
from relay.contrib.logging_middleware import LoggingMiddleware
from relay.transports.pubsub import PubSubTransport
from tests.keys import corrupted, leaked, service_account_key


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


def _everything(exc: BaseException) -> str:
    """All the text an exception can show: str, repr and the traceback with its causes."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def _key_file(tmp_path, info) -> str:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    return str(path)


def test_clients_are_built_lazily(no_emulator, tmp_path):
    # A key google-auth cannot load passes the settings' shape checks; it fails
    # at first use, not when the transport is made.
    info, _ = service_account_key()
    transport = _transport(gc_credentials_path=_key_file(tmp_path, corrupted(info)))
    transport.close()


def test_a_key_file_gone_since_load_names_the_setting_not_the_path(no_emulator, tmp_path):
    info, _ = service_account_key()
    path = _key_file(tmp_path, info)
    transport = _transport(gc_credentials_path=path)
    os.remove(path)
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_PATH") as raised:
        transport.ensure_topic("orders")
    text = _everything(raised.value)
    assert "cannot read the key file (No such file or directory)" in str(raised.value)
    assert path not in text and "key.json" not in text  # nor in a chained cause


def test_an_unusable_key_file_names_the_setting_never_the_key(no_emulator, tmp_path):
    info = corrupted(service_account_key()[0])
    transport = _transport(gc_credentials_path=_key_file(tmp_path, info))
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_PATH") as raised:
        transport.subscribe("orders", lambda m: None, relay.Settings().flow_control)
    text = _everything(raised.value)
    assert "Could not deserialize key data" in text  # google-auth's reason, kept
    assert not leaked(text, info) and "PRIVATE KEY" not in text


def test_invalid_credentials_json_names_the_setting(no_emulator, caplog):
    info = corrupted(service_account_key()[0])
    transport = _transport(gc_credentials_json=json.dumps(info))
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_JSON") as raised:
        transport.ensure_topic("orders")
    assert not leaked(_everything(raised.value), info)
    # A configuration error is raised by publish() itself, not hidden in a future,
    # so `relay-cli publish` exits 2; post_publish_failure fires once with it (every
    # pre_publish gets its post hook, so a tracing span is ended).
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_JSON"):
        transport.publish("orders", b"{}", {})
    recorder = _Hooks()
    publisher = relay.Publisher(
        transport, settings=transport.settings,
        middleware=relay.MiddlewareChain([recorder, LoggingMiddleware()]),
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(relay.ConfigurationError, match="GC_CREDENTIALS_JSON"):
        publisher.publish("orders", {"n": 1})
    [failure] = recorder.failures
    assert isinstance(failure, relay.ConfigurationError)
    # The relay.events ERROR line names the error and holds no key, in the record
    # itself (caplog's plain formatter, not relay's redacting ones).
    [line] = [r.getMessage() for r in caplog.records if r.name == "relay.events"]
    assert "publishing to orders failed" in line and "GC_CREDENTIALS_JSON" in line
    assert not leaked(caplog.text, info) and not leaked(line, info)


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
