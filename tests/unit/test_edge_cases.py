"""Edge cases: drain timeouts, odd handlers and filters, settings corner cases."""

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

import relay
import relay.testing
from relay import (
    BaseMiddleware,
    ConfigurationError,
    MiddlewareChain,
    Publisher,
    Settings,
    Status,
    Worker,
    sub,
)
from relay.message import OutgoingMessage
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, settings, wait_for


def test_timed_out_drain_nacks_every_unfinished_message_and_reports_it_twice() -> None:
    release = threading.Event()
    finished = threading.Event()

    @sub(topic="orders")
    def stuck(data: Any, **attrs: Any) -> None:
        release.wait(5)
        finished.set()

    transport = MemoryTransport(redelivery_delay=60)
    w = Worker([stuck], settings=settings(concurrency=1), transport=transport)
    w.start()
    for _ in range(3):
        transport.publish("orders", b"{}", {}).result(1)
    wait_for(lambda: transport.stats("orders")["outstanding"] == 3)
    assert w.stop(timeout=0.1) is False
    # The two that never started and the one still running: all handed back now.
    assert transport.stats("orders")["nacked"] == 3
    assert w.stop() is False  # a second stop reports the same result
    release.set()
    assert finished.wait(5)
    time.sleep(0.1)
    # The abandoned handler's late ack is ignored: the message stays nacked.
    assert transport.stats("orders")["acked"] == 0


def test_a_stuck_handler_does_not_hold_the_process_open_after_stop() -> None:
    script = textwrap.dedent(
        """
        import time
        from relay import Settings, Worker, sub
        from relay.transports.memory import MemoryTransport

        @sub(topic="orders")
        def stuck(data, **attrs):
            time.sleep(120)

        t = MemoryTransport()
        w = Worker([stuck], settings=Settings.load(environ={}, middleware=[]), transport=t)
        w.start()
        t.publish("orders", b"{}", {}).result(1)
        while t.stats("orders")["outstanding"] == 0:
            time.sleep(0.01)
        print("drained:", w.stop(timeout=0.2), flush=True)
        """
    )
    # Without daemon handler threads the interpreter would wait the full 120 s.
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "drained: False" in done.stdout


def test_handler_raising_system_exit_is_a_nacked_failure_not_a_dead_worker() -> None:
    calls = []

    @sub(topic="orders")
    def exits(data: Any, **attrs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise SystemExit(3)

    transport = MemoryTransport()
    rec = Recorder()
    w = Worker([exits], settings=settings(), transport=transport, middleware=MiddlewareChain([rec]))
    with w:
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 1)
    assert transport.stats("orders")["nacked"] == 1
    [failure] = rec.hooks("post_process_message_failure")
    assert isinstance(failure.exception, SystemExit)


def test_attribute_named_like_the_data_parameter_gets_a_clear_error() -> None:
    @sub(topic="orders")
    def handler(payload: Any, **attrs: Any) -> None: ...

    @sub(topic="orders", suffix="posonly")
    def positional_only(payload: Any, /, **attrs: Any) -> Any:
        return attrs["payload"]

    with relay.testing.memory_app() as env:
        relay.publish("orders", {}, payload="x")
        [outcome] = env.deliver([handler], raise_errors=False)
        assert outcome.status is Status.FAILURE
        assert "make the parameter positional-only" in str(outcome.exception)
        [ok] = env.deliver([positional_only])
        assert ok.result == "x"


def test_filters_must_take_keyword_attributes() -> None:
    with pytest.raises(ConfigurationError, match=r"cannot be called as f\(\*\*attributes\)"):
        sub(topic="orders", filter_by=lambda attrs: True)(lambda data, **kw: None)
    with pytest.raises(ConfigurationError, match="FILTER_SUBS_BY"):
        settings(filter_subs_by=[lambda attrs: True])
    sub(topic="orders", filter_by=lambda kind=None, **kw: kind == "x")(lambda data, **kw: None)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("TRANSPORT", "kafka", "expected 'grpc' (relay's own Pub/Sub transport), 'pubsub'"),
        ("DEFAULT_RETRY_POLICY", "a,b", "DEFAULT_RETRY_POLICY: 'a,b'; expected 'MIN,MAX'"),
        ("ENCODER_PATH", "x.y", "relay replaces it with ENCODER"),
        ("APP_NAME", "x", "SUB_PREFIX"),
    ],
)
def test_more_setting_errors(key: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.load({key: value}, environ={})
    assert fragment in str(info.value)


def test_relay_emulator_bin_is_not_a_setting() -> None:
    Settings.load(environ={"RELAY_EMULATOR_BIN": "/x", "RELAY_SETTINGS": "m"})


class AddsBadAttribute(BaseMiddleware):
    def pre_publish(self, message: OutgoingMessage) -> None:
        message.attributes["kind"] = "x" * 2000


@pytest.mark.parametrize("name", ["topic", "data", "ordering_key", "retry", "timeout", "self"])
def test_attribute_names_google_cannot_send_travel_on_the_memory_transport(name: str) -> None:
    # Only the pubsub transport refuses them (tests/unit/test_attribute_names.py).
    with relay.testing.memory_app() as env:
        relay.publish("orders", {}, attrs={name: "x"}).result(5)
        [record] = env.published
        assert record.attributes[name] == "x"


def test_attributes_added_by_middleware_are_validated() -> None:
    transport = MemoryTransport()
    rec = Recorder()
    pub = Publisher(
        transport, settings=settings(), middleware=MiddlewareChain([rec, AddsBadAttribute()])
    )
    with pytest.raises(ConfigurationError, match="'kind' is 2000 bytes"):
        pub.publish("orders", {}, kind="short")
    assert transport.published == []
    # pre_publish ran, so post_publish_failure does too (a tracing span gets ended).
    [(message, error)] = rec.hooks("post_publish_failure")
    assert isinstance(error, ConfigurationError) and message.topic == "orders"


def test_a_transport_that_raises_on_publish_still_fires_the_failure_hook() -> None:
    class Misconfigured(MemoryTransport):
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            raise ConfigurationError("GC_CREDENTIALS_PATH: cannot load service-account keys")

    rec = Recorder()
    pub = Publisher(Misconfigured(), settings=settings(), middleware=MiddlewareChain([rec]))
    with pytest.raises(ConfigurationError, match="GC_CREDENTIALS_PATH"):
        pub.publish("orders", {})
    [(_, error)] = rec.hooks("post_publish_failure")
    assert isinstance(error, ConfigurationError)
    assert pub.outstanding == (0, 0)


def test_an_async_handler_cancelled_from_inside_is_nacked_and_its_hooks_close() -> None:
    rec = Recorder()

    @sub(topic="orders")
    async def cancelled(data: Any, **attrs: Any) -> None:
        raise asyncio.CancelledError()

    transport = MemoryTransport(redelivery_delay=60)
    with Worker([cancelled], settings=settings(), transport=transport,
                middleware=MiddlewareChain([rec])):
        transport.publish("orders", b"{}", {}).result(1)
        wait_for(lambda: transport.stats("orders")["nacked"] == 1)
        wait_for(lambda: rec.hooks("post_process_message"))
    [(_, outcome)] = rec.hooks("post_process_message")
    assert isinstance(outcome.exception, asyncio.CancelledError)


def test_configure_closes_the_app_it_replaces() -> None:
    previous = relay.set_app(None)
    try:
        first = relay.configure(gc_project_id="relay-test", transport="memory")
        transport = first.transport
        relay.configure(gc_project_id="relay-test", transport="memory")
        assert transport.closed  # type: ignore[attr-defined]
    finally:
        relay.reset()
        relay.set_app(previous)


def test_pre_worker_start_fires_before_provisioning() -> None:
    seen: list[bool] = []

    class Probe(BaseMiddleware):
        def pre_worker_start(self, worker: Any) -> None:
            seen.append(bool(worker.provisioned))

    @sub(topic="orders")
    def handler(data: Any, **attrs: Any) -> None: ...

    w = Worker(
        [handler], settings=settings(), transport=MemoryTransport(),
        middleware=MiddlewareChain([Probe()]),
    )
    threading.Timer(0.1, w.stop).start()
    w.run_forever()
    assert seen == [False]
