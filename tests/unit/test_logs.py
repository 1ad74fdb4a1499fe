"""``relay.logs``: the JSON and text formats, and what relay's records may contain."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relay import App, MiddlewareChain, PublishError, Worker, sub
from relay.contrib.logging_middleware import LoggingMiddleware
from relay.contrib.tracing import TracingMiddleware
from relay.logs import JsonFormatter, TextFormatter, configure_logging
from relay.message import PAYLOAD_PREVIEW_BYTES
from relay.transports.memory import MemoryTransport
from tests.keys import service_account_key

from .helpers import settings, wait_for


class Capture(logging.Handler):
    """Every record any logger emits, formatted by ``formatter``, plus the raw records."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def objects(self, logger: str | None = None) -> list[dict[str, Any]]:
        """The records as JSON objects; with ``logger``, only that logger's.

        A background thread of an earlier test (a publish failing late) may log
        while a test runs: a test that counts records names its logger.
        """
        objects = [json.loads(line) for line in list(self.lines)]
        return [o for o in objects if logger is None or o["logger"] == logger]

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def root_at_debug() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.DEBUG)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture
def json_log(root_at_debug: logging.Logger) -> Iterator[Capture]:
    capture = Capture(JsonFormatter())
    root_at_debug.addHandler(capture)
    yield capture
    root_at_debug.removeHandler(capture)


def test_a_record_is_one_json_line_with_the_stable_keys(json_log: Capture) -> None:
    before = datetime.now(timezone.utc)
    logging.getLogger("relay.test").warning("created %d topics\nand %s", 2, "more")

    [line] = [line for line in json_log.lines if '"logger":"relay.test"' in line]
    assert "\n" not in line
    entry = json.loads(line)
    assert list(entry) == ["timestamp", "level", "logger", "event"]
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "relay.test"
    assert entry["event"] == "created 2 topics\nand more"
    assert entry["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(timezone.utc)


def test_exceptions_and_extra_fields(json_log: Capture) -> None:
    log = logging.getLogger("relay.test")
    try:
        raise KeyError("missing-id")
    except KeyError:
        log.exception("lookup failed", extra={"order": 7, "where": Path("/srv/app")})
    log.info("plain", extra={"event": "not allowed to replace the message"})

    failed, plain = json_log.objects("relay.test")
    assert failed["exc_type"] == "KeyError"
    assert failed["exc"].startswith("Traceback (most recent call last)")
    assert "KeyError: 'missing-id'" in failed["exc"]
    assert failed["order"] == 7
    assert failed["where"] == "/srv/app"  # not JSON-able: written as str()
    assert plain["event"] == "plain"


def test_trace_and_span_ids_come_from_the_current_valid_span(json_log: Capture) -> None:
    tracer = TracerProvider().get_tracer("relay-tests")
    log = logging.getLogger("relay.test")

    with tracer.start_as_current_span("handle") as span:
        log.info("inside")
    log.info("outside")

    inside, outside = json_log.objects("relay.test")
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert re.fullmatch(r"[0-9a-f]{32}", inside["trace_id"])
    assert "trace_id" not in outside and "span_id" not in outside


@sub(topic="orders")
def store_order(data: Any, **attrs: Any) -> None:
    pass


def test_with_tracing_first_a_message_s_records_carry_its_trace(json_log: Capture) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    chain = MiddlewareChain([TracingMiddleware(tracer_provider=provider), LoggingMiddleware()])
    transport = MemoryTransport()
    with Worker([store_order], settings=settings(), transport=transport, middleware=chain):
        transport.publish("orders", b'{"id": 1}', {}).result(5)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)

    [processed] = [o for o in json_log.objects() if o.get("operation") == "process"]
    [span] = [s for s in exporter.get_finished_spans() if s.name == "process orders"]
    assert processed["trace_id"] == f"{span.context.trace_id:032x}"
    assert processed["span_id"] == f"{span.context.span_id:016x}"


@sub(topic="uploads")
def store_upload(data: Any, **attrs: Any) -> None:
    raise ValueError("the upload store is read-only")


def run_worker(transport: MemoryTransport, **kw: Any) -> Worker:
    # The default MIDDLEWARE: relay.contrib.logging_middleware.LoggingMiddleware.
    return Worker([store_order, store_upload], settings=settings(**kw), transport=transport)


def test_logging_middleware_records_carry_the_message_fields(json_log: Capture) -> None:
    transport = MemoryTransport()
    with run_worker(transport):
        transport.publish("orders", b'{"id": 1}', {}).result(5)
        transport.publish("uploads", b'{"name": "a.png"}', {}).result(5)
        wait_for(lambda: any(o.get("status") == "failure" for o in json_log.objects()))
        wait_for(lambda: transport.stats("orders")["acked"] == 1)

    entries = [o for o in json_log.objects() if o["logger"] == "relay.events"]
    done = next(o for o in entries if o.get("subscription") == "orders")
    assert done["operation"] == "process" and done["status"] == "success"
    assert done["topic"] == "orders"
    assert done["message_id"] == transport.published[0].message_id
    assert isinstance(done["duration_ms"], float) and done["duration_ms"] >= 0
    assert done["level"] == "INFO"
    assert done["event"].startswith(f"message {done['message_id']} on orders success in ")

    failed = next(o for o in entries if o.get("subscription") == "uploads")
    assert failed["level"] == "ERROR" and failed["status"] == "failure"
    assert failed["exc_type"] == "ValueError"
    assert "the upload store is read-only" in failed["exc"]
    stopping = next(o for o in entries if o["event"].startswith("stopping worker"))
    assert stopping["operation"] == "worker_stop"


def test_the_text_format_is_unchanged(root_at_debug: logging.Logger) -> None:
    capture = Capture(TextFormatter())
    root_at_debug.addHandler(capture)
    transport = MemoryTransport()
    try:
        with run_worker(transport):
            transport.publish("orders", b'{"id": 1}', {}).result(5)
            wait_for(lambda: transport.stats("orders")["acked"] == 1)
    finally:
        root_at_debug.removeHandler(capture)

    lines = [line for line in capture.lines if "relay.events" in line]
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    relay\.events: message 1 on orders success in [0-9.]+ ms",
        lines[0],
    ), lines[0]
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    relay\.events: stopping worker with 2 subscription\(s\)",
        lines[-1],
    ), lines[-1]


def test_payloads_are_logged_as_a_truncated_preview_only(json_log: Capture) -> None:
    large = "x" * 10_000 + "-END-OF-PAYLOAD"
    transport = MemoryTransport()
    with run_worker(transport):
        # A payload the handler fails on, and one that is not even JSON.
        transport.publish("uploads", json.dumps({"blob": large}).encode(), {}).result(5)
        transport.publish("orders", b"not json " + large.encode(), {}).result(5)
        wait_for(lambda: "failure" in {o.get("status") for o in json_log.objects()})
        wait_for(lambda: any("undecodable" in o["event"] for o in json_log.objects()))
    app = App(settings(), transport=MemoryTransport())
    app.transport.fail_publishes = ConnectionError("broker down")  # type: ignore[attr-defined]
    with pytest.raises(PublishError):
        app.publisher.publish("orders", {"blob": large}, blocking=True)
    app.close()

    output = "\n".join(json_log.lines)
    assert "END-OF-PAYLOAD" not in output  # the end of each payload never reaches the log
    assert max(len(run) for run in re.findall("x+", output)) <= PAYLOAD_PREVIEW_BYTES
    previews = [o["event"] for o in json_log.objects() if "payload: " in o["event"]]
    assert len(previews) >= 3  # handler failure, undecodable payload, publish failure
    for event in previews:
        assert re.search(r"\.\.\. \(\d+ bytes\)$", event), event


@pytest.mark.parametrize("how", ["GC_CREDENTIALS_JSON", "GC_CREDENTIALS_PATH"])
def test_credentials_never_reach_the_logs_even_at_debug(
    json_log: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)  # credentials are loaded
    info, pem = service_account_key()
    if how == "GC_CREDENTIALS_JSON":
        secret: dict[str, Any] = {"gc_credentials_json": json.dumps(info)}
    else:
        path = tmp_path / "key.json"
        path.write_text(json.dumps(info))
        secret = {"gc_credentials_path": str(path)}
    text_log = Capture(TextFormatter())
    logging.getLogger().addHandler(text_log)
    try:
        # A worker holding the credentials in its settings handles a failing message...
        transport = MemoryTransport()
        with run_worker(transport, **secret):
            transport.publish("uploads", b"{}", {}).result(5)
            wait_for(lambda: any(o.get("status") == "failure" for o in json_log.objects()))
        # ...and the Pub/Sub transport loads them and tries to reach a closed port.
        app = App(settings(
            **secret, client_options={"api_endpoint": "127.0.0.1:9"},
            publisher_retry_timeout=1.0, publisher_timeout=30.0,
        ))
        assert app.settings.emulator_host is None
        # A PublishError, not a ConfigurationError: the key was loaded and used.
        with pytest.raises(PublishError, match=r"127\.0\.0\.1:9"):
            app.publisher.publish("orders", {"id": 1}, blocking=True)
        app.close()
        # The failure is logged from google's thread, maybe after publish() raised:
        # wait for it here, or it lands in the next test's capture.
        wait_for(lambda: any(o.get("operation") == "publish" for o in json_log.objects()))
    finally:
        logging.getLogger().removeHandler(text_log)

    assert json_log.lines and text_log.lines
    body = "".join(pem.splitlines()[1:-1])  # the base64 key material
    pieces = {body[i:i + 24] for i in range(0, len(body) - 24, 24)}
    everything = [
        *json_log.lines, *text_log.lines,
        *(str(vars(record)) for record in json_log.records),  # raw records too
    ]
    for text in everything:
        assert "PRIVATE KEY" not in text
        assert not [p for p in pieces if p in text or p in text.replace("\\n", "")]


def test_a_private_key_in_someone_elses_record_is_redacted(json_log: Capture) -> None:
    logging.getLogger("thirdparty").debug(
        "loaded %s", {"private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\n"
                                     "-----END PRIVATE KEY-----\n", "id": "k1"},
    )
    logging.getLogger("thirdparty").debug("cut short: -----BEGIN RSA PRIVATE KEY-----\nMIIE")

    logging.getLogger("thirdparty").debug("raw: -----BEGIN PRIVATE KEY-----\nMIIE\n-----END "
                                          "PRIVATE KEY-----\n, id k2")

    # Only this test's logger: a record leaked from an earlier test's background
    # publish must not break the count.
    whole, cut, raw = json_log.objects("thirdparty")
    assert whole["event"] == "loaded {'private_key': '[redacted]', 'id': 'k1'}"
    assert cut["event"] == "cut short: [private key redacted]"
    assert raw["event"] == "raw: [private key redacted]\n, id k2"


def test_configure_logging_installs_one_handler_unless_the_app_configured_logging(
    root_at_debug: logging.Logger,
) -> None:
    root_at_debug.handlers.clear()
    stream = io.StringIO()

    assert configure_logging("WARNING", "json", stream=stream) is True
    logging.getLogger("relay.test").info("dropped: below WARNING")
    logging.getLogger("relay.test").warning("kept")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["kept"]
    assert root_at_debug.level == logging.WARNING

    installed = list(root_at_debug.handlers)
    assert configure_logging("DEBUG", "text", stream=io.StringIO()) is False
    assert root_at_debug.handlers == installed and root_at_debug.level == logging.WARNING

    root_at_debug.handlers.clear()
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    logging.getLogger("relay.worker").info("created topic orders")
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    relay\.worker: created topic orders\n", stream.getvalue()
    )
    with pytest.raises(ValueError, match="'yaml'"):
        configure_logging("INFO", "yaml")


def test_configure_logging_quiets_googles_stream_reopen_notices(
    root_at_debug: logging.Logger,
) -> None:
    bidi = logging.getLogger("google.api_core.bidi")  # "Re-established stream" at INFO
    saved = bidi.level
    bidi.setLevel(logging.NOTSET)
    try:
        root_at_debug.handlers.clear()
        configure_logging("INFO", "text", stream=io.StringIO())
        assert not bidi.isEnabledFor(logging.INFO)
        assert bidi.isEnabledFor(logging.WARNING)
        assert logging.getLogger("google.api_core.other").isEnabledFor(logging.INFO)

        bidi.setLevel(logging.DEBUG)  # a level the application chose stands
        root_at_debug.handlers.clear()
        configure_logging("INFO", "text", stream=io.StringIO())
        assert bidi.isEnabledFor(logging.DEBUG)
    finally:
        bidi.setLevel(saved)
