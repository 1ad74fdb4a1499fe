"""Tracing and metrics end to end on the Pub/Sub emulator.

relay publishes through ``PubSubTransport``, a ``Worker`` consumes, and the
spans and metric points are read back from in-memory exporters of per-test SDK
providers. The trace context travels in real Pub/Sub message attributes.

One test publishes with google-cloud-pubsub's own ``PublisherClient`` and its
OpenTelemetry tracing on. That tracing uses the *global* tracer provider, which
OpenTelemetry lets a process set only once, so that publisher runs in a child
process with its own global provider and reports its spans as JSON; this
process never sets a global provider.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import relay
from relay.contrib.metrics import MetricsMiddleware
from relay.contrib.tracing import TracingMiddleware
from tests.conftest import EMULATOR_PROJECT


class Telemetry:
    """SDK tracer and meter providers with in-memory exporters, and relay's two middleware."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracing = TracingMiddleware(tracer_provider=self.tracer_provider)
        self.metrics = MetricsMiddleware(meter_provider=self.meter_provider)

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            frozenset(p.attributes.items()): p
            for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics if m.name == metric for p in m.data.data_points
        }


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    return span.get_span_context().span_id


def test_spans_and_metrics_follow_a_message_and_the_one_its_handler_publishes(
    make_harness, recorder, unique_name, wait_for, pubsub_emulator
):
    telemetry = Telemetry()
    harness = make_harness(middleware=[telemetry.tracing, recorder, telemetry.metrics])
    orders, invoices = unique_name("orders"), unique_name("invoices")

    @relay.sub(orders)
    def bill(data, **attrs):
        harness.publisher.publish(invoices, {"order": data["id"]}, blocking=True)

    @relay.sub(invoices)
    async def send_invoice(data, **attrs):
        await asyncio.sleep(0.01)

    harness.worker([bill, send_invoice])
    message_id = harness.publisher.publish(
        orders, {"id": 7}, ordering_key="customer-7", blocking=True
    ).result()

    wait_for(lambda: telemetry.spans(f"process {invoices}"), timeout=30, what="the 2nd consumer")
    [send_orders] = telemetry.spans(f"send {orders}")
    [process_orders] = telemetry.spans(f"process {orders}")
    [send_invoices] = telemetry.spans(f"send {invoices}")
    [process_invoices] = telemetry.spans(f"process {invoices}")

    # One trace: send -> process -> send (from the handler) -> process (async handler)
    chain = [send_orders, process_orders, send_invoices, process_invoices]
    assert len({s.get_span_context().trace_id for s in chain}) == 1
    assert parent_id(send_orders) is None
    assert [parent_id(s) for s in chain[1:]] == [span_id(s) for s in chain[:-1]]
    assert [s.kind for s in chain] == [SpanKind.PRODUCER, SpanKind.CONSUMER] * 2
    assert [link.context.span_id for link in process_orders.links] == [span_id(send_orders)]

    assert dict(send_orders.attributes or {}) == {
        "messaging.system": "gcp_pubsub",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": orders,
        "messaging.message.body.size": len(b'{"id":7}'),
        "messaging.gcp_pubsub.message.ordering_key": "customer-7",
        "messaging.message.id": message_id,  # the id Pub/Sub gave
    }
    received = {m.id: m for m, _ in recorder.outcomes()}
    expected = {
        "messaging.system": "gcp_pubsub",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": orders,
        "messaging.destination.subscription.name": bill.name,
        "messaging.message.id": message_id,
        "messaging.message.body.size": len(b'{"id":7}'),
        "messaging.gcp_pubsub.message.ordering_key": "customer-7",
        "relay.outcome": "success",
        "relay.action": "ack",
    }
    if pubsub_emulator.kind == "google":
        # Google's emulator sets delivery_attempt even without a dead-letter policy;
        # Pub/Sub (and relay's server) sets it only with one.
        expected["messaging.gcp_pubsub.message.delivery_attempt"] = 1
        assert received[message_id].delivery_attempt == 1
    else:
        assert received[message_id].delivery_attempt is None
    assert dict(process_orders.attributes or {}) == expected
    # The context went through Pub/Sub as an attribute of the message.
    ctx = send_orders.get_span_context()
    traceparent = received[message_id].attributes["traceparent"]
    assert traceparent.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")

    # Metrics: one send and one processed message per topic, all successful.
    def send(topic: str) -> frozenset[tuple[str, Any]]:
        return frozenset({
            "messaging.system": "gcp_pubsub", "messaging.operation.name": "send",
            "messaging.operation.type": "send", "messaging.destination.name": topic,
            "relay.outcome": "success",
        }.items())

    def process(topic: str, subscription: str) -> frozenset[tuple[str, Any]]:
        return frozenset({
            "messaging.system": "gcp_pubsub", "messaging.operation.name": "process",
            "messaging.operation.type": "process", "messaging.destination.name": topic,
            "messaging.destination.subscription.name": subscription,
            "relay.outcome": "success",
        }.items())

    wait_for(lambda: len(telemetry.points("messaging.client.consumed.messages")) == 2,
             what="both consumed-messages points")
    sent = telemetry.points("messaging.client.sent.messages")
    assert {k: p.value for k, p in sent.items()} == {send(orders): 1, send(invoices): 1}
    durations = telemetry.points("messaging.client.operation.duration")
    assert {k: p.count for k, p in durations.items()} == {send(orders): 1, send(invoices): 1}
    consumed = telemetry.points("messaging.client.consumed.messages")
    assert {k: p.value for k, p in consumed.items()} == {
        process(orders, bill.name): 1, process(invoices, send_invoice.name): 1,
    }
    processing = telemetry.points("messaging.process.duration")
    assert {k: p.count for k, p in processing.items()} == {
        process(orders, bill.name): 1, process(invoices, send_invoice.name): 1,
    }
    assert processing[process(invoices, send_invoice.name)].sum >= 0.01


def test_a_redelivered_message_gets_a_span_per_attempt_under_the_same_producer(
    make_harness, recorder, unique_name, wait_for, pubsub_emulator
):
    telemetry = Telemetry()
    harness = make_harness(middleware=[telemetry.tracing, recorder, telemetry.metrics])
    topic = unique_name("flaky")
    attempts: list[int] = []

    class Flaky(Exception):
        pass

    @relay.sub(topic)
    def handler(data, **attrs):
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise Flaky("first attempt fails")

    harness.worker([handler])
    harness.publisher.publish(topic, {"n": 1}, blocking=True)

    processes = wait_for(
        lambda: (lambda s: s if len(s) == 2 else None)(telemetry.spans(f"process {topic}")),
        timeout=60, what="two process spans (the nack and the redelivery)",
    )
    [send] = telemetry.spans(f"send {topic}")
    failed, succeeded = sorted(processes, key=lambda s: s.start_time or 0)
    assert parent_id(failed) == parent_id(succeeded) == span_id(send)
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "Flaky: first attempt fails"
    failed_attrs = dict(failed.attributes or {})
    assert failed_attrs["error.type"].endswith(".Flaky")
    assert (failed_attrs["relay.outcome"], failed_attrs["relay.action"]) == ("failure", "nack")
    assert succeeded.status.status_code is StatusCode.UNSET
    assert "error.type" not in (succeeded.attributes or {})
    wait_for(lambda: harness.wire.nacks(handler.name) == 1, what="the nack on the wire")
    # delivery_attempt as the server counts it: Google's emulator without a
    # dead-letter policy too; Pub/Sub and relay's server only with one.
    attempt = "messaging.gcp_pubsub.message.delivery_attempt"
    seen = (failed_attrs.get(attempt), (succeeded.attributes or {}).get(attempt))
    assert seen == ((1, 2) if pubsub_emulator.kind == "google" else (None, None))

    wait_for(lambda: sum(p.value for p in telemetry.points(
        "messaging.client.consumed.messages").values()) == 2, what="2 consumed")
    consumed = {dict(k)["relay.outcome"]: (dict(k).get("error.type"), p.value)
                for k, p in telemetry.points("messaging.client.consumed.messages").items()}
    assert consumed["success"] == (None, 1)
    assert consumed["failure"][1] == 1 and consumed["failure"][0].endswith(".Flaky")


GOOGLE_PUBLISHER = textwrap.dedent(
    """
    import json, sys, time

    from google.cloud import pubsub_v1
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # this child process's own global provider

    project, topic = sys.argv[1], sys.argv[2]
    client = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_open_telemetry_tracing=True)
    )
    message_id = client.publish(
        client.topic_path(project, topic), b'{"id": 42}', source="google"
    ).result(timeout=60)
    deadline = time.monotonic() + 30
    while not [s for s in exporter.get_finished_spans() if s.name.endswith(" create")]:
        if time.monotonic() > deadline:
            sys.exit("google's create span never ended")
        time.sleep(0.05)
    spans = [
        {"name": s.name, "kind": s.kind.name,
         "trace_id": s.context.trace_id, "span_id": s.context.span_id}
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"message_id": message_id, "spans": spans}))
    """
)


def test_a_message_from_google_publisher_with_its_tracing_on_continues_its_trace(
    make_harness, recorder, unique_name, wait_for
):
    telemetry = Telemetry()
    harness = make_harness(middleware=[telemetry.tracing, recorder, telemetry.metrics])
    topic = unique_name("mixed")

    @relay.sub(topic)
    def handle(data, **attrs):
        pass

    harness.worker([handle])  # provisions the topic and the subscription first
    child = subprocess.run(
        [sys.executable, "-c", GOOGLE_PUBLISHER, EMULATOR_PROJECT, topic],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    [create] = [s for s in report["spans"] if s["name"] == f"{topic} create"]
    assert create["kind"] == "PRODUCER"

    [process] = wait_for(lambda: telemetry.spans(f"process {topic}"), timeout=30,
                         what="relay's process span")
    [(message, outcome)] = recorder.outcomes()
    assert message.id == report["message_id"]
    assert outcome.status is relay.Status.SUCCESS
    # google wrote its context under googclient_ keys only; relay read it from there.
    assert "traceparent" not in message.attributes
    assert message.attributes["googclient_traceparent"].startswith(
        f"00-{create['trace_id']:032x}-{create['span_id']:016x}-"
    )
    assert process.get_span_context().trace_id == create["trace_id"]
    assert parent_id(process) == create["span_id"]
    assert [link.context.span_id for link in process.links] == [create["span_id"]]
    assert (process.attributes or {})["messaging.message.id"] == report["message_id"]
