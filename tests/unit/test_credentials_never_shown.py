"""No error, log line, exception or repr ever holds a credential (issue 9).

Every test generates a real service-account key, hands it to relay in a wrong
place, type or shape, and then searches everything relay produced (the error's
str and repr, its traceback with every chained cause, the settings' repr, the
log records raw and formatted) for any piece of the key: the private_key_id,
and a 40-character slice of each line of the PEM body.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay import App, ConfigurationError, PublishError, RelayError, Settings
from relay.logs import JsonFormatter, TextFormatter
from relay.redaction import REDACTED, redact, shown
from relay.transports.memory import MemoryTransport
from tests.keys import leaked, service_account_key

from .helpers import settings

INFO, PEM = service_account_key()
KEY_JSON = json.dumps(INFO)
BROKEN = json.dumps({k: v for k, v in INFO.items() if k != "token_uri"})


def _file(content: str | bytes) -> Callable[[Path], Path]:
    def write(tmp_path: Path) -> Path:
        path = tmp_path / "key.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path
    return write


#: (key, the value, or a function of tmp_path making it, what the error must say).
BAD: dict[str, tuple[str, Any, str]] = {
    # GC_CREDENTIALS_JSON: the key, in every wrong type and shape
    "json-bytes": ("GC_CREDENTIALS_JSON", KEY_JSON.encode(), "got bytes: decode it first"),
    "json-list": ("GC_CREDENTIALS_JSON", [INFO], "got a list"),
    "json-list-string": ("GC_CREDENTIALS_JSON", json.dumps([INFO]), "got a JSON array"),
    "json-double-encoded": ("GC_CREDENTIALS_JSON", json.dumps(KEY_JSON), "got a JSON string"),
    "json-cut-short": ("GC_CREDENTIALS_JSON", KEY_JSON[:900], "is not valid JSON (Unterminated"),
    "json-python-repr": ("GC_CREDENTIALS_JSON", str(INFO), "is not valid JSON (Expecting"),
    "json-bare-pem": ("GC_CREDENTIALS_JSON", PEM, "it holds a bare PEM key"),
    "json-missing-field": ("GC_CREDENTIALS_JSON", BROKEN, "it has no token_uri"),
    "json-dict-missing-field": (
        "GC_CREDENTIALS_JSON", json.loads(BROKEN), "it has no token_uri",
    ),
    "json-dict-not-json": ("GC_CREDENTIALS_JSON", {**INFO, "x": b"1"}, "JSON cannot represent"),
    "json-other-type": (
        "GC_CREDENTIALS_JSON", {**INFO, "type": "authorized_user"},
        "holds 'authorized_user' credentials, not a service-account key",
    ),
    "json-int": ("GC_CREDENTIALS_JSON", 12, "got an int"),
    # GC_CREDENTIALS_PATH: the key itself instead of a path, or a path to the wrong thing
    "path-key-json": ("GC_CREDENTIALS_PATH", KEY_JSON, "got a str holding a private key"),
    "path-key-cut-short": ("GC_CREDENTIALS_PATH", KEY_JSON[:60], "looks like the file's contents"),
    "path-pem": ("GC_CREDENTIALS_PATH", PEM, "pass the key itself as GC_CREDENTIALS_JSON"),
    "path-dict": ("GC_CREDENTIALS_PATH", INFO, "got a dict holding a private key (not shown)"),
    "path-bytes": ("GC_CREDENTIALS_PATH", KEY_JSON.encode(), "got bytes holding a private"),
    "path-list": ("GC_CREDENTIALS_PATH", [KEY_JSON], "got a list holding a private key"),
    "path-to-garbage": ("GC_CREDENTIALS_PATH", _file("key = yes\n"), "is not valid JSON"),
    "path-to-binary": ("GC_CREDENTIALS_PATH", _file(b"\xff\xfe\x00k"), "the file is not text"),
    "path-to-pem": ("GC_CREDENTIALS_PATH", _file(PEM), "it holds a bare PEM key"),
    "path-to-cut-key": ("GC_CREDENTIALS_PATH", _file(KEY_JSON[:1200]), "is not valid JSON"),
    "path-to-list": ("GC_CREDENTIALS_PATH", _file(json.dumps([INFO])), "got a JSON array"),
    "path-to-incomplete-key": ("GC_CREDENTIALS_PATH", _file(BROKEN), "it has no token_uri"),
    "path-to-non-pem-key": (
        "GC_CREDENTIALS_PATH", _file(json.dumps({**INFO, "private_key": PEM[28:900]})),
        "its private_key (not shown) is not a PEM private key",
    ),
    "path-missing": ("GC_CREDENTIALS_PATH", lambda tmp: tmp / "nope.json", "there is no file"),
    "path-directory": ("GC_CREDENTIALS_PATH", lambda tmp: tmp, "the path is a directory"),
    # key material arriving in other settings
    "project-id-json": ("GC_PROJECT_ID", KEY_JSON, "GC_PROJECT_ID: got a str holding a private"),
    "project-id-dict": ("GC_PROJECT_ID", INFO, "a service-account key goes in GC_CREDENTIALS_JSON"),
    "client-options-info": ("CLIENT_OPTIONS", {"credentials_info": INFO}, "CLIENT_OPTIONS: got a"),
    "client-options-file": ("CLIENT_OPTIONS", {"credentials_file": KEY_JSON}, "CLIENT_OPTIONS"),
    "client-options-string": ("CLIENT_OPTIONS", KEY_JSON, "CLIENT_OPTIONS: got a"),
    "sub-prefix-pem": ("SUB_PREFIX", PEM, "SUB_PREFIX: got a str holding a private key"),
    "ack-deadline-json": ("ACK_DEADLINE", KEY_JSON, "ACK_DEADLINE: got a str holding"),
    "retry-policy-dict": ("DEFAULT_RETRY_POLICY", INFO, "DEFAULT_RETRY_POLICY: got a dict"),
    "regions-list": ("GC_STORAGE_REGIONS", [PEM], "GC_STORAGE_REGIONS: got a list"),
    "middleware-list": ("MIDDLEWARE", [KEY_JSON], "MIDDLEWARE: got a list holding"),
    "misspelt-key": ("GC_CREDENTIAL_JSON", INFO, "unknown setting 'GC_CREDENTIAL_JSON'"),
}


def _everything(exc: BaseException) -> str:
    """All the text an exception can show: str, repr, and the traceback with its causes."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def _assert_no_key(text: str) -> None:
    assert "PRIVATE KEY" not in text
    assert not leaked(text, INFO), leaked(text, INFO)
    assert not leaked(text.replace("\\n", "\n"), INFO)


@pytest.fixture
def no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)  # credentials files are read


def _sources(case: str) -> list[Any]:
    key, value, _ = BAD[case]
    sources = ["mapping", "keyword", "constructor"]
    if isinstance(value, str):
        sources.append("environment")
    if key not in ("GC_CREDENTIALS_PATH", "GC_CREDENTIALS_JSON", "GC_PROJECT_ID") or not (
        isinstance(value, (str, type(None)))
    ):
        sources.remove("constructor")  # the constructor takes converted values only
    if key == "GC_CREDENTIAL_JSON":
        sources = ["mapping"]
    return [pytest.param(case, source, id=f"{case}-{source}") for source in sources]


@pytest.mark.parametrize(("case", "source"), [p for case in BAD for p in _sources(case)])
def test_a_key_given_wrongly_is_refused_without_showing_it(
    case: str, source: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, no_emulator: None
) -> None:
    key, value, says = BAD[case]
    if callable(value):
        value = str(value(tmp_path))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigurationError) as raised:
        if source == "mapping":
            Settings.load({key: value}, environ={})
        elif source == "keyword":
            Settings.load(environ={}, **{key: value})
        elif source == "environment":
            Settings.load(environ={f"RELAY_{key}": value})
        else:
            Settings(**{key.lower(): value})

    message = str(raised.value)
    assert message.startswith(key) or key == "GC_CREDENTIAL_JSON", message
    if source != "constructor":  # the constructor says a str is expected, and where
        assert says in message
    _assert_no_key(_everything(raised.value) + caplog.text)


def test_a_key_file_s_dict_is_accepted_and_never_shown(no_emulator: None) -> None:
    s = Settings.load({"GC_CREDENTIALS_JSON": INFO}, environ={})
    assert json.loads(s.gc_credentials_json or "") == INFO
    _assert_no_key(repr(s) + str(s) + repr(s.replace(ack_deadline=30)))


def test_settings_show_no_credential_however_they_hold_it(
    tmp_path: Path, no_emulator: None
) -> None:
    path = _file(KEY_JSON)(tmp_path)
    for s in (
        Settings.load(environ={"RELAY_GC_CREDENTIALS_JSON": KEY_JSON}),
        Settings.load(environ={}, gc_credentials_path=path),  # a pathlib.Path is taken too
        Settings(gc_credentials_json=KEY_JSON),
        Settings.load(environ={}, client_options={"api_key": "AIza-secret-api-key"}),
    ):
        _assert_no_key(repr(s) + str(s))
        assert "AIza-secret-api-key" not in repr(s)
        assert str(path) not in repr(s)


def test_a_relay_error_never_carries_a_key_whoever_formats_its_message() -> None:
    # The backstop: whatever code builds the message, the exception holds no key.
    errors: list[RelayError] = [
        ConfigurationError(f"settings: {INFO}"),
        ConfigurationError(f"settings: {KEY_JSON}"),
        RelayError(f"cut: {KEY_JSON[:700]}"),
        PublishError("orders", FileNotFoundError(2, "No such file or directory", KEY_JSON)),
    ]
    for error in errors:
        _assert_no_key(str(error) + repr(error) + repr(error.args))
    assert "client_email" in str(errors[0])  # the rest of the message stays


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_publish_failure_quoting_a_key_logs_no_key(level: str, fmt: str) -> None:
    # google-auth's FileNotFoundError quoted the key pasted as a path, and the
    # relay.events ERROR line quoted the exception (issue 9, case 3). The record
    # itself is clean, not only relay's formatting of it.
    stream = io.StringIO()
    formatted = logging.StreamHandler(stream)
    formatted.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    raw = logging.StreamHandler(io.StringIO())  # the stdlib's formatter: no redaction
    events = logging.getLogger("relay.events")
    saved = events.level
    events.setLevel(level)
    events.addHandler(formatted)
    events.addHandler(raw)
    try:
        app = App(settings(), transport=MemoryTransport())
        app.transport.fail_publishes = FileNotFoundError(  # type: ignore[attr-defined]
            2, "No such file or directory", KEY_JSON
        )
        with pytest.raises(PublishError) as raised:
            app.publisher.publish("orders", {"note": PEM[:300]}, blocking=True)
        app.close()
    finally:
        events.removeHandler(formatted)
        events.removeHandler(raw)
        events.setLevel(saved)
    output = stream.getvalue() + raw.stream.getvalue()  # type: ignore[attr-defined]
    assert "publishing to orders failed" in output
    _assert_no_key(output + str(raised.value) + repr(raised.value))


@pytest.mark.parametrize(
    "text",
    [
        PEM,
        json.dumps(PEM),
        KEY_JSON,
        str(INFO),
        json.dumps(KEY_JSON),  # a key file inside a JSON string inside a line
        json.dumps({"x": json.dumps(INFO)}),
        repr(KEY_JSON),
        KEY_JSON[:600],  # cut inside the private key
        PEM[:200],
        str(INFO)[:200],  # cut inside the private_key_id
    ],
    ids=["pem", "pem-json", "json", "repr", "json-in-json", "nested", "repr-of-json",
         "json-cut", "pem-cut", "repr-cut-at-id"],
)
def test_redact_removes_a_key_in_every_form(text: str) -> None:
    _assert_no_key(redact(f"before {text} after"))
    assert redact(f"before {text} after").startswith("before ")


def test_redact_keeps_everything_else() -> None:
    plain = "private key rotation is due; 'private_key_id' missing; id k1; -----BEGIN"
    assert redact(plain) == plain
    assert redact(f"a {PEM.strip()} b") == f"a {REDACTED} b"
    assert redact('{"api_key": "AIza-1", "topic": "orders"}') == (
        '{"api_key": "[redacted]", "topic": "orders"}'
    )


def test_shown_is_short_and_never_a_key() -> None:
    assert shown("ten") == "'ten'"
    assert shown("x" * 500) == "'" + "x" * 96 + "..."
    assert shown(INFO) == "a dict holding a private key (not shown)"
    assert shown(KEY_JSON.encode()) == "bytes holding a private key (not shown)"

    class Leaky:
        def __repr__(self) -> str:
            return f"Leaky({KEY_JSON})"

    _assert_no_key(shown(Leaky()))


def test_from_object_does_not_print_the_config_it_was_given() -> None:
    # A Flask config or Django settings object without RELAY: its repr holds the
    # app's secrets (here a key); the error names only its type.
    config = {"SECRET_KEY": "s3cret", "GOOGLE_KEY": INFO}
    with pytest.raises(ConfigurationError, match="the dict has no 'RELAY' setting") as raised:
        Settings.from_object(config)
    assert "s3cret" not in str(raised.value)
    _assert_no_key(_everything(raised.value))
