"""Every example runs here: the quickstart end to end on the emulator, and the
examples' subscriptions through a real Worker on the memory transport."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay import Outcome, Publisher, Settings, Worker
from relay.discovery import discover
from relay.middleware import MiddlewareChain
from relay.transports.memory import MemoryTransport
from tests.support.emulators import require_emulator
from tests.support.outcomes import Outcomes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


# --------------------------------------------------------------- end to end
@pytest.mark.emulator
@pytest.mark.timeout(360)
def test_quickstart_script_runs_end_to_end_on_the_emulator() -> None:
    """``scripts/quickstart.sh``, the README's command, minus uv (the suite's venv is used)."""
    require_emulator()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RELAY_", "PUBSUB_", "QUICKSTART_"))}
    env["QUICKSTART_VENV"] = sys.prefix
    # The script gives up by itself well within this test's timeout, cleaning up.
    env["QUICKSTART_READY_TIMEOUT"] = "90"
    env["QUICKSTART_HANDLED_TIMEOUT"] = "60"

    script = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "quickstart.sh")], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        stdout, stderr = script.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        script.terminate()  # SIGTERM: its trap stops the worker and the emulator
        stdout, stderr = script.communicate(timeout=60)
        pytest.fail(f"quickstart.sh did not finish:\n{stdout}{stderr}")

    output = stdout + stderr
    assert script.returncode == 0, output
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("quickstart OK: 5 messages published, 7 handled"), output
    for handled in (
        "order 1: confirmation sent to ada@example.com",
        "order 3: reserved 3 x cake",
        "photo alps.jpg: panorama made (landscape)",
        "on quickstart-photos skipped",
        "SIGTERM received: stopping gracefully",
        "worker stopped",
    ):
        assert handled in output
    assert "cat.jpg: panorama" not in output


# ------------------------------------------------------- on the memory transport
@pytest.fixture
def isolated_imports() -> Iterator[None]:
    """Each example has a ``subs`` module: forget it (and sys.path changes) afterwards."""
    path = list(sys.path)
    yield
    for name in [n for n in sys.modules if n == "subs" or n.startswith("subs.")]:
        del sys.modules[name]
    sys.path[:] = path


def run_example(
    directory: str, messages: list[tuple[str, Any, dict[str, str]]], expected: int, **settings: Any
) -> list[tuple[str, Any, Outcome]]:
    """Discover the example's subscriptions, publish, and run a Worker until ``expected``."""
    config = Settings(transport="memory", **settings)
    subscriptions = discover(EXAMPLES / directory, settings=config)
    transport = MemoryTransport()
    outcomes = Outcomes()
    worker = Worker(
        subscriptions, settings=config, transport=transport,
        middleware=MiddlewareChain([outcomes]),
    )
    with worker:
        publisher = Publisher(transport, settings=config)
        for topic, data, attrs in messages:
            publisher.publish(topic, data, blocking=True, attrs=attrs)
        return outcomes.wait(expected)


@pytest.mark.usefixtures("isolated_imports")
def test_quickstart_handlers_filters_and_async() -> None:
    order = {"id": 1, "email": "ada@example.com", "item": "coffee", "quantity": 2}
    seen = run_example(
        "quickstart",
        [
            ("orders", order, {}),
            ("photos", {"name": "alps.jpg"}, {"orientation": "landscape"}),
            ("photos", {"name": "cat.jpg"}, {"orientation": "portrait"}),
        ],
        expected=4,
        sub_prefix="quickstart",
    )

    by_result = sorted((name, data.get("name", data.get("id")), o.status.value)
                       for name, data, o in seen)
    assert by_result == [
        ("quickstart-orders", 1, "success"),
        ("quickstart-orders-stock", 1, "success"),
        ("quickstart-photos", "alps.jpg", "success"),
        ("quickstart-photos", "cat.jpg", "skipped"),
    ]


@pytest.mark.usefixtures("isolated_imports")
def test_class_based_subscriptions() -> None:
    seen = run_example(
        "class_based",
        [("photo-uploaded", {"name": "alps.jpg"}, {}), ("avatar-uploaded", {"user": "ada"}, {})],
        expected=2,
    )

    results = sorted((name, outcome.result) for name, _, outcome in seen)
    assert results == [
        ("avatar-uploaded-thumbnails", "thumbnails/64x64/ada.png"),
        ("photo-uploaded-thumbnails", "thumbnails/128x128/alps.jpg"),
    ]


@pytest.mark.usefixtures("isolated_imports")
def test_observability_example_traces_and_serves_prometheus_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The example's own settings (tracing, logging, metrics, the /metrics endpoint) on a
    real Worker in memory: one trace across both topics, and Prometheus's scrape."""
    import importlib.util
    import time
    import urllib.request

    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import relay
    from relay.testing import memory_app

    monkeypatch.setenv("METRICS_PORT", "0")  # any free port
    spec = importlib.util.spec_from_file_location(
        "observability_settings", EXAMPLES / "observability" / "settings.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    exporter = InMemorySpanExporter()  # next to the example's console exporter
    example.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = Settings.from_object(example)
    subscriptions = discover(EXAMPLES / "observability", settings=config)

    def names() -> list[str]:
        return sorted(s.name for s in exporter.get_finished_spans())

    try:
        with memory_app(config) as env, env.worker(subscriptions):
            server = example.metrics_endpoint.server
            assert server is not None, "pre_worker_start did not start the endpoint"
            relay.publish("orders", {"id": 1, "amount": 30})
            relay.publish("orders", {"id": 2, "amount": 99}, priority="high")
            deadline = time.monotonic() + 10
            while names().count("process observability-invoices") < 2:
                assert time.monotonic() < deadline, names()
                time.sleep(0.01)
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                scrape = response.read().decode()
        assert example.metrics_endpoint.server is None  # closed by post_worker_stop
    finally:
        example.meter_provider.shutdown()
        example.tracer_provider.shutdown()

    spans = {s.get_span_context().span_id: s for s in exporter.get_finished_spans()}
    for invoice in [s for s in spans.values() if s.name == "process observability-invoices"]:
        # walk up: process invoices <- send invoices <- process orders <- send orders
        chain = [invoice.name]
        span = invoice
        while span.parent is not None:
            span = spans[span.parent.span_id]
            chain.append(span.name)
        assert chain == ["process observability-invoices", "send invoices",
                         "process observability-orders", "send orders"]
    assert names().count("process observability-orders-priority") == 2

    def sample(line_start: str, **labels: str) -> float:
        for line in scrape.splitlines():
            if line.startswith(line_start + "{") and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no {line_start} {labels} in the scrape:\n{scrape}")

    assert sample("messaging_client_sent_messages_total", messaging_destination_name="orders",
                  relay_outcome="success") == 2
    assert sample("messaging_client_sent_messages_total", messaging_destination_name="invoices",
                  relay_outcome="success") == 2
    assert sample("messaging_client_consumed_messages_total",
                  messaging_destination_subscription_name="observability-orders-priority",
                  relay_outcome="skipped") == 1
    assert sample("messaging_client_consumed_messages_total",
                  messaging_destination_subscription_name="observability-orders-priority",
                  relay_outcome="success") == 1
    assert sample("messaging_process_duration_seconds_count",
                  messaging_destination_subscription_name="observability-invoices") == 2
    assert sample("messaging_client_operation_duration_seconds_count",
                  messaging_destination_name="orders", messaging_operation_name="send") == 2


# ----------------------------------------------------------------- tasks (seed 001)
@pytest.fixture
def tasks_example(isolated_imports: None) -> Iterator[tuple[Settings, Any, Any]]:
    """examples/tasks: its settings, and its ``subs`` and ``client`` modules."""
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tasks_settings", EXAMPLES / "tasks" / "settings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    settings = Settings.from_object(module, environ={})
    sys.path.insert(0, str(EXAMPLES / "tasks"))
    subs = importlib.import_module("subs")
    client = importlib.import_module("client")
    subs.PAGE_SECONDS = 0.01
    yield settings, subs, client
    sys.modules.pop("client", None)


def _expected_reports() -> list[Any]:
    return [
        {"report": 1, "pages": 2, "url": "/reports/1.pdf"},
        {"report": 2, "pages": 2, "url": "/reports/2.pdf"},
        "failed: relay.errors.UnrecoverableError: report 3: a report needs at least one page",
    ]


def test_tasks_client_polls_until_the_worker_is_done(
    tasks_example: tuple[Settings, Any, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    """The seed 001 flow in memory: results travel as Pub/Sub replies on the memory
    transport (the example's RESULTS='pubsub')."""
    from relay.testing import memory_app

    settings, _, client = tasks_example
    subscriptions = discover(EXAMPLES / "tasks", settings=settings)
    assert [s.name for s in subscriptions] == ["subs.render_report"]
    with memory_app(settings) as env, env.worker(subscriptions):
        assert client.main(3, poll=0.01, timeout=20) == _expected_reports()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("enqueued 3 report(s)")
    statuses = [line for line in lines if line.startswith("status: ")]
    assert statuses[-1] == "status: succeeded, succeeded, failed"


@pytest.mark.emulator
@pytest.mark.timeout(120)
def test_tasks_example_on_the_emulator(
    tasks_example: tuple[Settings, Any, Any], pubsub_emulator: Any,
) -> None:
    """The same with a real Worker and the client on the emulator (Pub/Sub replies)."""
    import uuid

    import relay
    from tests.conftest import EMULATOR_PROJECT

    settings, _, client = tasks_example
    settings = settings.replace(
        gc_project_id=EMULATOR_PROJECT, topic_prefix=f"ex-{uuid.uuid4().hex[:8]}-",
        default_retry_policy=None, middleware=(),
    )
    worker = Worker(discover(EXAMPLES / "tasks", settings=settings), settings=settings)
    relay.configure(settings)
    try:
        with worker:
            assert client.main(3, poll=0.05, timeout=60) == _expected_reports()
    finally:
        relay.reset()
