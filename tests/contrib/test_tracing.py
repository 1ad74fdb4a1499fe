"""TracingMiddleware on the memory transport, with the OpenTelemetry SDK.

Spans go to a per-test ``TracerProvider`` with an in-memory exporter (the
``spans`` fixture); the global provider is never set.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import relay
from relay import Action, ConfigurationError, PublishError, Status
from relay.contrib.logging_middleware import LoggingMiddleware
from relay.contrib.tracing import TracingMiddleware
from relay.testing import memory_app
from tests.conftest import _wait_for as wait_until

from .conftest import Spans


class OrderRejected(Exception):
    pass


def traceparent_of(span: Any) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def test_rejects_an_unknown_parent_mode() -> None:
    with pytest.raises(ConfigurationError, match=r"'child'.*'link'"):
        TracingMiddleware(parent="sibling")


# ------------------------------------------------------------------ publishing
def test_publish_makes_a_producer_span_and_injects_its_context(spans: Spans) -> None:
    tracing = TracingMiddleware(tracer_provider=spans.provider)
    with memory_app(MIDDLEWARE=[tracing]) as env:
        future = relay.publish("orders", {"id": 1}, ordering_key="customer-7", source="web")
        message_id = future.result()

    send = spans.one("send orders")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is None
    assert send.status.status_code is StatusCode.UNSET
    assert dict(send.attributes or {}) == {
        "messaging.system": "gcp_pubsub",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "orders",
        "messaging.message.body.size": len(b'{"id":1}'),
        "messaging.gcp_pubsub.message.ordering_key": "customer-7",
        "messaging.message.id": message_id,
    }
    [record] = env.published
    assert record.attributes["traceparent"] == traceparent_of(send)
    assert record.attributes["source"] == "web"


def test_the_topic_prefix_is_part_of_the_destination(spans: Spans) -> None:
    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)],
                    TOPIC_PREFIX="staging-"):
        relay.publish("orders", {"id": 1})
    send = spans.one("send staging-orders")
    assert (send.attributes or {})["messaging.destination.name"] == "staging-orders"


def test_a_publish_that_fails_ends_its_span_with_an_error(spans: Spans) -> None:
    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        env.transport.fail_publishes = ConnectionError("pubsub is down")
        with pytest.raises(PublishError):
            relay.publish("orders", {"id": 1}, blocking=True)

    send = spans.one("send orders")
    assert send.status.status_code is StatusCode.ERROR
    assert send.status.description == "ConnectionError: pubsub is down"
    attributes = dict(send.attributes or {})
    assert attributes["error.type"] == "ConnectionError"
    assert "messaging.message.id" not in attributes
    assert not send.events  # recording-errors.md: no exception event


def test_a_span_of_the_caller_is_the_parent_of_the_send_span(spans: Spans) -> None:
    tracer = spans.provider.get_tracer("test")
    with (
        memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]),
        tracer.start_as_current_span("checkout") as checkout,
    ):
        relay.publish("orders", {"id": 1})
    send = spans.one("send orders")
    assert send.parent is not None
    assert send.parent.span_id == checkout.get_span_context().span_id


def test_the_propagator_can_be_chosen(spans: Spans) -> None:
    tracing_default = TracingMiddleware(tracer_provider=spans.provider)
    tracing_w3c = TracingMiddleware(
        tracer_provider=spans.provider, propagator=TraceContextTextMapPropagator()
    )
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with memory_app(MIDDLEWARE=[tracing_default]) as env:
            relay.publish("orders", {"id": 1})
            default_attrs = env.published[0].attributes
        with memory_app(MIDDLEWARE=[tracing_w3c]) as env:
            relay.publish("orders", {"id": 2})
            w3c_attrs = env.published[0].attributes
    finally:
        otel_context.detach(token)
    # The global propagator (W3C trace context + baggage by default) carries baggage too.
    assert default_attrs["baggage"] == "tenant=acme"
    assert "traceparent" in w3c_attrs
    assert "baggage" not in w3c_attrs


# ------------------------------------------------------------ attribute limits
def test_no_injection_when_it_would_exceed_the_attribute_count(
    spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    many = {f"a{i}": "x" for i in range(99)}  # + published_at = 100, Pub/Sub's limit
    with (
        memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env,
        caplog.at_level(logging.WARNING, logger="relay.contrib.tracing"),
    ):
        relay.publish("orders", {"id": 1}, attrs=many, blocking=True)
        relay.publish("orders", {"id": 2}, attrs=many, blocking=True)
        relay.publish("orders", {"id": 3}, blocking=True)

    first, second, third = env.published
    assert len(first.attributes) == 100 and "traceparent" not in first.attributes
    assert "traceparent" not in second.attributes
    assert "traceparent" in third.attributes
    # Every publish went out and has its span; the warning came once.
    assert len(spans.named("send orders")) == 3
    warnings = [r for r in caplog.records if r.name == "relay.contrib.tracing"]
    assert len(warnings) == 1
    assert "Pub/Sub allows at most 100" in warnings[0].getMessage()


def test_no_injection_when_a_value_would_exceed_1024_bytes(
    spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    token = otel_context.attach(baggage.set_baggage("blob", "b" * 2000))
    try:
        with (
            memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env,
            caplog.at_level(logging.WARNING, logger="relay.contrib.tracing"),
        ):
            relay.publish("orders", {"id": 1}, blocking=True)
    finally:
        otel_context.detach(token)
    [record] = env.published
    assert "baggage" not in record.attributes
    assert "traceparent" not in record.attributes
    assert "the limit is 1024" in caplog.text


# ------------------------------------------------------------------ processing
def test_the_consumer_span_is_a_child_of_the_producer_span(spans: Spans) -> None:
    seen: list[trace.Span] = []

    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        seen.append(trace.get_current_span())

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("orders", {"id": 1}, ordering_key="customer-7")
        [outcome] = env.deliver([handle])

    send = spans.one("send orders")
    process = spans.one("process orders")
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == send.get_span_context().span_id
    assert process.get_span_context().trace_id == send.get_span_context().trace_id
    # and, as the conventions want, a link to the creation context
    assert [link.context.span_id for link in process.links] == [send.get_span_context().span_id]
    assert dict(process.attributes or {}) == {
        "messaging.system": "gcp_pubsub",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "orders",
        "messaging.destination.subscription.name": "orders",
        "messaging.message.id": env.published[0].message_id,
        "messaging.message.body.size": len(b'{"id":1}'),
        "messaging.gcp_pubsub.message.ordering_key": "customer-7",
        "messaging.gcp_pubsub.message.delivery_attempt": 1,
        "relay.outcome": "success",
        "relay.action": "ack",
    }
    assert process.status.status_code is StatusCode.UNSET
    # Current while the handler ran, and not after.
    assert seen[0].get_span_context() == process.get_span_context()
    assert not trace.get_current_span().get_span_context().is_valid
    assert outcome.status is Status.SUCCESS


def test_with_parent_link_the_consumer_starts_a_trace_linked_to_the_producer(
    spans: Spans,
) -> None:
    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        pass

    tracing = TracingMiddleware(tracer_provider=spans.provider, parent="link")
    with memory_app(MIDDLEWARE=[tracing]) as env:
        relay.publish("orders", {"id": 1})
        env.deliver([handle])

    send = spans.one("send orders")
    process = spans.one("process orders")
    assert process.parent is None
    assert process.get_span_context().trace_id != send.get_span_context().trace_id
    [link] = process.links
    assert link.context.span_id == send.get_span_context().span_id
    assert link.context.trace_id == send.get_span_context().trace_id


def test_as_a_child_an_ambient_span_is_kept_as_a_link(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        pass

    tracer = spans.provider.get_tracer("test")
    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("orders", {"id": 1})
        with tracer.start_as_current_span("http request") as ambient:
            env.deliver([handle])

    send = spans.one("send orders")
    process = spans.one("process orders")
    assert process.parent is not None
    assert process.parent.span_id == send.get_span_context().span_id
    assert [link.context.span_id for link in process.links] == [
        send.get_span_context().span_id, ambient.get_span_context().span_id,
    ]


def test_a_message_without_context_starts_a_new_trace(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        pass

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        env.transport.publish("orders", b'{"id": 1}', {})  # a publisher without tracing
        env.deliver([handle])

    process = spans.one("process orders")
    assert process.parent is None
    assert not process.links


def test_a_handler_that_publishes_continues_the_trace(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def bill(data: Any, **attrs: str) -> None:
        relay.publish("invoices", {"order": data["id"]})

    @relay.sub(topic="invoices")
    def send_invoice(data: Any, **attrs: str) -> None:
        pass

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("orders", {"id": 1})
        env.deliver([bill])
        env.deliver([send_invoice])

    chain = [spans.one(n) for n in
             ("send orders", "process orders", "send invoices", "process invoices")]
    trace_ids = {s.get_span_context().trace_id for s in chain}
    assert len(trace_ids) == 1
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None
        assert child.parent.span_id == parent.get_span_context().span_id, child.name


def test_forwarded_attributes_get_the_new_context_and_a_link_to_the_old(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def forward(data: Any, **attrs: str) -> None:
        relay.publish("audit", data, **attrs)  # attrs carry the received traceparent

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("orders", {"id": 1}, attrs={"tracestate": "vendor=1"})
        env.deliver([forward])

    _, forwarded = env.published
    send_orders = spans.one("send orders")
    send_audit = spans.one("send audit")
    assert forwarded.attributes["traceparent"] == traceparent_of(send_audit)
    assert "tracestate" not in forwarded.attributes  # the old trace's state went with it
    [link] = send_audit.links
    assert link.context.span_id == send_orders.get_span_context().span_id


def test_failures_set_the_error_status_and_type(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def reject(data: Any, **attrs: str) -> None:
        raise OrderRejected("no stock for item 3")

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("orders", {"id": 1})
        [outcome] = env.deliver([reject], raise_errors=False)

    process = spans.one("process orders")
    assert outcome.action is Action.NACK
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "OrderRejected: no stock for item 3"
    attributes = dict(process.attributes or {})
    assert attributes["error.type"] == f"{__name__}.OrderRejected"
    assert (attributes["relay.outcome"], attributes["relay.action"]) == ("failure", "nack")


def test_an_undecodable_payload_is_an_error_acked(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        pass

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("orders", {"id": 1})
        env.transport.publish("orders", b"\xff not json", {})
        env.deliver([handle], raise_errors=False)

    bad = [s for s in spans.named("process orders") if s.status.status_code is StatusCode.ERROR]
    [span] = bad
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "relay.errors.DecodeError"
    assert attributes["relay.action"] == "ack"


def test_a_skipped_message_is_not_an_error(spans: Spans) -> None:
    @relay.sub(topic="photos", filter_by=lambda **attrs: attrs.get("kind") == "landscape")
    def panorama(data: Any, **attrs: str) -> None:
        pass

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("photos", {"id": 1}, kind="portrait")
        env.deliver([panorama])

    process = spans.one("process photos")
    assert process.status.status_code is StatusCode.UNSET
    assert (process.attributes or {})["relay.outcome"] == "skipped"
    assert "error.type" not in (process.attributes or {})


def test_an_async_handler_sees_its_span_as_current(spans: Spans) -> None:
    seen: list[trace.Span] = []

    @relay.sub(topic="orders")
    async def handle(data: Any, **attrs: str) -> None:
        await asyncio.sleep(0)
        seen.append(trace.get_current_span())
        relay.publish("invoices", {"order": data["id"]})

    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        relay.publish("orders", {"id": 1})
        env.deliver([handle])

    process = spans.one("process orders")
    assert seen[0].get_span_context() == process.get_span_context()
    child = spans.one("send invoices")
    assert child.parent is not None
    assert child.parent.span_id == process.get_span_context().span_id


def test_the_logging_middleware_runs_inside_the_span(
    spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    """TracingMiddleware first: LoggingMiddleware's record is made while the span is current."""
    current: list[trace.SpanContext] = []

    class SpanOfRecord(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            current.append(trace.get_current_span().get_span_context())

    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        pass

    handler = SpanOfRecord(level=logging.INFO)
    events = logging.getLogger("relay.events")
    events.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="relay.events"):
            middleware = [TracingMiddleware(tracer_provider=spans.provider), LoggingMiddleware()]
            with memory_app(MIDDLEWARE=middleware) as env:
                relay.publish("orders", {"id": 1})
                env.deliver([handle])
    finally:
        events.removeHandler(handler)
    assert current == [spans.one("process orders").get_span_context()]


# ------------------------------------------------------- google-cloud-pubsub keys
def test_googclient_keys_are_read_when_relay_keys_are_absent(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        pass

    other = spans.provider.get_tracer("google.cloud.pubsub_v1")
    with other.start_as_current_span("orders create") as create:
        google = traceparent_of(create)
    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        env.transport.publish("orders", b'{"id": 1}', {"googclient_traceparent": google})
        env.deliver([handle])

    process = spans.one("process orders")
    assert process.parent is not None
    assert process.parent.span_id == create.get_span_context().span_id
    assert process.get_span_context().trace_id == create.get_span_context().trace_id


def test_relay_keys_win_over_googclient_keys(spans: Spans) -> None:
    @relay.sub(topic="orders")
    def handle(data: Any, **attrs: str) -> None:
        pass

    tracer = spans.provider.get_tracer("test")
    with tracer.start_as_current_span("a") as a, tracer.start_as_current_span("b") as b:
        pass
    with memory_app(MIDDLEWARE=[TracingMiddleware(tracer_provider=spans.provider)]) as env:
        env.transport.publish("orders", b'{"id": 1}', {
            "traceparent": traceparent_of(a),
            "googclient_traceparent": traceparent_of(b),
        })
        env.deliver([handle])
    process = spans.one("process orders")
    assert process.parent is not None
    assert process.parent.span_id == a.get_span_context().span_id


# --------------------------------------------------------------- no provider
def test_with_the_noop_provider_nothing_is_recorded_and_context_passes_through(
    spans: Spans,
) -> None:
    """No SDK: no spans, no new ids; an incoming context still reaches the handler's publish."""
    tracing = TracingMiddleware(tracer_provider=trace.NoOpTracerProvider())
    tenants: list[object] = []

    @relay.sub(topic="orders")
    def bill(data: Any, **attrs: str) -> None:
        tenants.append(baggage.get_baggage("tenant"))
        relay.publish("invoices", {"order": data["id"]})

    upstream = spans.provider.get_tracer("upstream")
    with upstream.start_as_current_span("upstream") as up:
        incoming = traceparent_of(up)
    with memory_app(MIDDLEWARE=[tracing]) as env:
        relay.publish("orders", {"id": 1})
        assert "traceparent" not in env.published[0].attributes
        env.clear()
        env.transport.publish("orders", b'{"id": 2}', {"traceparent": incoming})
        env.deliver([bill])
        [_, invoice] = env.published
    assert invoice.attributes["traceparent"] == incoming
    assert [s.name for s in spans.finished()] == ["upstream"]

    # Baggage alone flows too: in with the publish, out to the handler.
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with memory_app(MIDDLEWARE=[tracing]) as env:
            relay.publish("orders", {"id": 3})
            assert env.published[0].attributes["baggage"] == "tenant=acme"
    finally:
        otel_context.detach(token)
    with memory_app(MIDDLEWARE=[tracing]) as env:
        env.transport.publish("orders", b'{"id": 4}', {"baggage": "tenant=initech"})
        env.deliver([bill])
    assert tenants == [None, "initech"]


# ------------------------------------------------------------- a real worker
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_on_a_worker_each_message_gets_its_own_current_span(
    spans: Spans, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On the worker's handler threads and in its event loop's tasks, the span is
    current for its own message only, and detaching it succeeds.

    With ``parent="link"`` the consumer span starts in the ambient context: on a
    handler thread, a context left attached by one message would become the
    next one's parent. OpenTelemetry logs "Failed to detach context" when a
    detach happens in another context than its attach (e.g. another task).
    """
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def record() -> None:
        with lock:
            seen.append((trace.get_current_span().get_span_context().span_id,
                         threading.current_thread().name))

    if mode == "sync":
        @relay.sub(topic="orders")
        def handle(data: Any, **attrs: str) -> None:
            record()
    else:
        @relay.sub(topic="orders")
        async def handle(data: Any, **attrs: str) -> None:
            await asyncio.sleep(0.001)
            record()

    tracing = TracingMiddleware(tracer_provider=spans.provider, parent="link")
    with memory_app(MIDDLEWARE=[tracing], CONCURRENCY=2) as env, env.worker([handle]):
        for i in range(6):
            relay.publish("orders", {"id": i})
        wait_until(lambda: len(spans.named("process orders")) == 6, what="6 process spans")

    processes = spans.named("process orders")
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert all(s.parent is None for s in processes)
    assert len({s.get_span_context().trace_id for s in processes}) == 6
    assert sorted(span_id for span_id, _ in seen) == sorted(
        s.get_span_context().span_id for s in processes
    )
    threads = {name for _, name in seen}
    assert threads <= ({"relay-asyncio"} if mode == "async" else {
        f"relay-handler-{i}" for i in range(10)})
