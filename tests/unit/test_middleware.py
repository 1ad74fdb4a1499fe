import logging
from typing import Any

import pytest

from relay import BaseMiddleware, ConfigurationError, MiddlewareChain, Settings, Worker, sub
from relay.message import OutgoingMessage
from relay.transports.memory import MemoryTransport

from .helpers import Recorder, settings, wait_for


def test_pre_hooks_in_order_post_hooks_in_reverse() -> None:
    log: list[tuple[str, str]] = []
    chain = MiddlewareChain([Recorder("a", log), Recorder("b", log), Recorder("c", log)])
    msg = OutgoingMessage("orders", {}, {})
    chain.run("pre_publish", msg)
    chain.run("post_publish_success", msg, 0.1)
    assert log == [
        ("a", "pre_publish"), ("b", "pre_publish"), ("c", "pre_publish"),
        ("c", "post_publish_success"), ("b", "post_publish_success"), ("a", "post_publish_success"),
    ]


class Exploding(BaseMiddleware):
    def pre_publish(self, message: OutgoingMessage) -> None:
        raise RuntimeError("hook bug")


def test_a_raising_hook_is_logged_and_contained(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, str]] = []
    chain = MiddlewareChain([Exploding(), Recorder("after", log)])
    with caplog.at_level(logging.ERROR, logger="relay.middleware"):
        chain.run("pre_publish", OutgoingMessage("orders", {}, {}))
    assert log == [("after", "pre_publish")]
    assert "Exploding.pre_publish raised" in caplog.text
    assert "hook bug" in caplog.text


def test_only_overridden_hooks_are_registered() -> None:
    chain = MiddlewareChain([Exploding()])
    assert chain.has("pre_publish")
    assert not chain.has("post_publish_success")
    assert not MiddlewareChain([BaseMiddleware()]).has("pre_process_message")


class NeedsArgs(BaseMiddleware):
    def __init__(self, level: int) -> None:
        self.level = level


def test_from_settings_accepts_paths_classes_and_instances() -> None:
    inst = Recorder("inst")
    settings = Settings.load(
        environ={},
        middleware=[
            "relay.contrib.logging_middleware.LoggingMiddleware",
            Recorder,
            inst,
        ],
    )
    chain = MiddlewareChain.from_settings(settings)
    names = [type(m).__name__ for m in chain]
    assert names == ["LoggingMiddleware", "Recorder", "Recorder"]
    assert inst.hooks("setup") == [settings]  # setup() receives the settings


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("relay.nothing_here.Middleware", "cannot import module 'relay.nothing_here'"),
        (dict, "is not a relay.BaseMiddleware subclass"),
        (NeedsArgs, "cannot build NeedsArgs() without arguments"),
        (42, "is not a BaseMiddleware class, instance or dotted path"),
    ],
)
def test_bad_middleware_entries(item: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        MiddlewareChain.from_settings(Settings.load(environ={}, middleware=[item]))
    assert fragment in str(info.value)


class ExitingOnMessages(BaseMiddleware):
    """A buggy hook that raises what is not an ``Exception`` on every message."""

    def pre_process_message(self, subscription: Any, message: Any) -> None:
        raise SystemExit("hook bug")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync-handler", "async-handler"])
def test_a_hook_raising_system_exit_on_a_worker_thread_is_contained(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[str] = []
    if is_async:
        async def handle(data: Any, **attrs: str) -> None:
            handled.append(attrs["n"])
    else:
        def handle(data: Any, **attrs: str) -> None:
            handled.append(attrs["n"])
    s = sub(topic="orders")(handle)
    transport = MemoryTransport()
    with caplog.at_level(logging.ERROR, logger="relay.middleware"), Worker(
        [s], settings=settings(), transport=transport,
        middleware=MiddlewareChain([ExitingOnMessages()]),
    ):
        for n in ("1", "2"):
            transport.publish("orders", b"{}", {"n": n}).result(1)
        wait_for(lambda: transport.stats("orders")["acked"] == 2)
    assert sorted(handled) == ["1", "2"]
    assert caplog.text.count("ExitingOnMessages.pre_process_message raised") == 2


def test_a_hook_raising_keyboard_interrupt_on_the_main_thread_still_stops_the_caller() -> None:
    class Interrupting(BaseMiddleware):
        def pre_publish(self, message: OutgoingMessage) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MiddlewareChain([Interrupting()]).run("pre_publish", OutgoingMessage("orders", {}, {}))
