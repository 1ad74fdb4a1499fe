"""Without arguments, both middleware use the global providers, even ones set later.

OpenTelemetry lets a process set its global providers once, so this runs in a
child process; the test process never sets them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import relay
    from relay.contrib.metrics import MetricsMiddleware
    from relay.contrib.tracing import TracingMiddleware
    from relay.testing import memory_app

    # Built first, as relay.configure() would at import time of a settings module...
    middleware = [TracingMiddleware(), MetricsMiddleware()]

    with memory_app(MIDDLEWARE=middleware) as env:
        relay.publish("orders", {"id": 0})  # no provider yet: nothing recorded
        untraced = dict(env.published[0].attributes)

    # ...and the application configures OpenTelemetry afterwards.
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    # Tracing looks for a global provider at most once a second while it has none.
    import time
    from relay.contrib.tracing import RECHECK_INTERVAL
    time.sleep(RECHECK_INTERVAL + 0.1)

    @relay.sub(topic="orders")
    def handle(data, **attrs):
        pass

    with memory_app(MIDDLEWARE=middleware) as env:
        relay.publish("orders", {"id": 1})
        env.deliver([handle])

    names = sorted(
        m.name for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics for m in sm.metrics
    )
    print(json.dumps({
        "untraced": sorted(untraced),
        "spans": sorted(s.name for s in exporter.get_finished_spans()),
        "metrics": names,
    }))
    """
)


def test_the_middleware_use_the_global_providers_set_after_they_were_built() -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["untraced"] == ["published_at"]
    assert report["spans"] == ["process orders", "send orders"]
    assert report["metrics"] == [
        "messaging.client.consumed.messages",
        "messaging.client.operation.duration",
        "messaging.client.sent.messages",
        "messaging.process.duration",
    ]
