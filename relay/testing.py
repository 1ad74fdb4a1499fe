"""Helpers for testing code that uses relay, without Pub/Sub.

``memory_app()`` installs a process-wide app on the in-memory transport, so
``relay.publish`` records messages instead of sending them, and ``deliver()``
runs what was published through your subscriptions synchronously, with the
real middleware chain and ack policy, re-raising handler exceptions::

    from relay.testing import memory_app

    def test_order_is_stored():
        with memory_app() as env:
            place_order(42)                     # calls relay.publish("orders", ...)
            env.deliver([store_order])          # runs the @sub handler
            assert env.published_data("orders") == [{"id": 42}]

With pytest, the ``relay_memory`` fixture (auto-registered by the plugin in
``relay.pytest_plugin``) does the same per test.

Tasks are subscriptions, so ``deliver([add])`` runs what ``add.delay(...)``
published. With ``memory_app(RESULTS="memory")`` their outcomes are kept in
the process and the handles answer (``handle.result()``); with
``RESULTS="pubsub"`` the replies travel over the memory transport as they would
over Pub/Sub. A delayed task (``countdown``/``eta``) runs at once in
``deliver()``; a ``worker()`` holds it until it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from relay.app import App, reset, set_app
from relay.codec import Codec
from relay.message import Outcome, Status
from relay.middleware import MiddlewareChain
from relay.processing import Processor
from relay.replies import PubSubReplies
from relay.results import ResultBackend, close_results, results_backend
from relay.settings import Settings
from relay.subscription import Subscription
from relay.transports.memory import MemoryMessage, MemoryTransport, PublishedRecord
from relay.worker import Worker

__all__ = ["MemoryEnvironment", "memory_app", "reset"]


class MemoryEnvironment:
    """A process-wide app on a ``MemoryTransport``, plus helpers to drive it."""

    def __init__(self, settings: Settings, transport: MemoryTransport) -> None:
        self.settings = settings
        self.transport = transport
        self.app = App(settings, transport=transport)
        self._processor = Processor(
            self.app.middleware, Codec(settings.encoder), settings.filter_subs_by
        )
        self._cursor: dict[str, int] = {}

    @property
    def middleware(self) -> MiddlewareChain:
        return self.app.middleware

    @property
    def results(self) -> ResultBackend | None:
        """The results backend (``RESULTS``), or None when results are off."""
        return results_backend(self.app.middleware)

    @property
    def published(self) -> list[PublishedRecord]:
        """Every message published so far, in order."""
        return list(self.transport.published)

    def published_data(self, topic: str | None = None) -> list[Any]:
        """Decoded data of what was published (to ``topic``, prefix applied, if given)."""
        full = None if topic is None else self.settings.topic_prefix + topic
        records = self.transport.published
        return [Codec.decode(r.data) for r in records if full is None or r.topic == full]

    def deliver(
        self, subscriptions: Iterable[Subscription], *, raise_errors: bool = True
    ) -> list[Outcome]:
        """Run every not-yet-delivered published message through matching subscriptions.

        Synchronous: each handler (sync or async) has run when this returns.
        With ``raise_errors`` the first handler exception is re-raised (after
        the middleware saw it); otherwise inspect the returned outcomes.
        A nacked message is not redelivered here.
        """
        outcomes: list[Outcome] = []
        for sub in subscriptions:
            resolved = sub.resolve(self.settings)
            start = self._cursor.get(resolved.name, 0)
            records = self.transport.published
            self._cursor[resolved.name] = len(records)
            for record in records[start:]:
                if record.topic != resolved.full_topic:
                    continue
                received = MemoryMessage(record)
                if resolved.is_async:
                    outcome = asyncio.run(self._processor.process_async(resolved, received))
                else:
                    outcome = self._processor.process(resolved, received)
                outcomes.append(outcome)
                if raise_errors and outcome.status is Status.FAILURE and outcome.exception:
                    raise outcome.exception
        return outcomes

    def worker(self, subscriptions: Iterable[Subscription], **kwargs: Any) -> Worker:
        """A real Worker on this environment's memory transport (threads and all)."""
        return Worker(
            subscriptions, settings=self.settings, transport=self.transport,
            middleware=self.app.middleware, **kwargs,
        )

    def clear(self) -> None:
        """Forget what was published."""
        self.transport.published.clear()
        self._cursor.clear()


@contextlib.contextmanager
def memory_app(
    settings: Settings | Mapping[str, Any] | None = None, **overrides: Any
) -> Iterator[MemoryEnvironment]:
    """Install a memory-transport app as the process-wide app for the block.

    ``settings`` and ``overrides`` are as for ``relay.configure``; the project id
    defaults to ``relay-test`` and the transport is always the memory one. The
    previous app is restored afterwards.
    """
    if isinstance(settings, Settings):
        built = settings.replace(transport="memory", **overrides)
    else:
        base = dict(settings or {})
        base.setdefault("GC_PROJECT_ID", "relay-test")
        built = Settings.load(base, environ={}, **overrides).replace(transport="memory")
    env = MemoryEnvironment(built, MemoryTransport())
    if isinstance(env.results, PubSubReplies):
        env.results.use_transport(env.transport)  # replies travel in memory too
    previous = set_app(env.app)
    try:
        yield env
    finally:
        set_app(previous)
        close_results(env.app.middleware)
        env.transport.close()




