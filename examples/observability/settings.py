"""Settings for the observability example: ``relay-cli run --settings settings``.

Wires relay's two OpenTelemetry middleware to SDK providers: spans go to the
console (one line each; swap in an OTLP exporter for a real backend) and
metrics to a Prometheus endpoint, served on 127.0.0.1:``METRICS_PORT`` (9464
by default) while a worker runs. Needs the ``prometheus`` extra:
``uv sync --extra prometheus`` (or ``pip install 'relay-pubsub[prometheus]'``).
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, start_http_server

from relay import BaseMiddleware
from relay.contrib.metrics import MetricsMiddleware
from relay.contrib.tracing import TracingMiddleware

resource = Resource.create({"service.name": "relay-observability-example"})


def one_line(span: ReadableSpan) -> str:
    """``trace=<id> span=<id> parent=<id or -> <kind> <name> <ms> ms [error]``."""
    ctx = span.get_span_context()
    parent = f"{span.parent.span_id:016x}" if span.parent else "-"
    took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    error = " ERROR" if span.status.status_code is StatusCode.ERROR else ""
    return (f"span trace={ctx.trace_id:032x} span={ctx.span_id:016x} parent={parent} "
            f"{span.kind.name} {span.name} {took:.1f} ms{error}\n")


#: Spans: batched, exported on a background thread, flushed at exit.
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(formatter=one_line)))

#: Metrics: read by Prometheus on each scrape. A registry of its own keeps the
#: exposition to these metrics (use prometheus_client.REGISTRY to join others).
registry = CollectorRegistry()
meter_provider = MeterProvider(
    resource=resource, metric_readers=[PrometheusMetricReader(registry=registry)]
)


class PrometheusEndpoint(BaseMiddleware):
    """Serves ``/metrics`` while a worker runs, so ``relay-cli publish`` opens no port."""

    def __init__(self, port: int, addr: str = "127.0.0.1") -> None:
        self.port = port
        self.addr = addr
        self.server: Any = None

    def pre_worker_start(self, worker: Any) -> None:
        if self.server is None:
            self.server, _ = start_http_server(self.port, addr=self.addr, registry=registry)

    def post_worker_stop(self, worker: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


metrics_endpoint = PrometheusEndpoint(int(os.environ.get("METRICS_PORT", "9464")))

RELAY = {
    # Any project id works on the emulator; on Google Cloud use your own.
    "GC_PROJECT_ID": "relay-observability",
    "SUB_PREFIX": "observability",
    # TracingMiddleware first (outermost): the others' hooks, and so the log
    # lines of LoggingMiddleware, run inside the message's span.
    "MIDDLEWARE": [
        TracingMiddleware(tracer_provider=tracer_provider),
        "relay.contrib.logging_middleware.LoggingMiddleware",
        MetricsMiddleware(meter_provider=meter_provider),
        metrics_endpoint,
    ],
}
