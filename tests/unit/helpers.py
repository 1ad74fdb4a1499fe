"""Shared helpers for unit tests: a recording middleware and polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from relay import BaseMiddleware, Settings
from relay.transports.memory import MemoryTransport


class Recorder(BaseMiddleware):
    """Records every hook call as (hook, details) in order, thread-safely."""

    def __init__(self, name: str = "rec", log: list[tuple[str, str]] | None = None) -> None:
        self.name = name
        self.calls: list[tuple[str, Any]] = []
        self.shared_log = log
        self._lock = threading.Lock()

    def _add(self, hook: str, detail: Any = None) -> None:
        with self._lock:
            self.calls.append((hook, detail))
            if self.shared_log is not None:
                self.shared_log.append((self.name, hook))

    def hooks(self, name: str) -> list[Any]:
        with self._lock:
            return [d for h, d in self.calls if h == name]

    def setup(self, settings: Any, **kwargs: Any) -> None:
        self._add("setup", settings)

    def pre_publish(self, message: Any) -> None:
        self._add("pre_publish", message)

    def post_publish_success(self, message: Any, elapsed: float) -> None:
        self._add("post_publish_success", message)

    def post_publish_failure(self, message: Any, exception: BaseException, elapsed: float) -> None:
        self._add("post_publish_failure", (message, exception))

    def pre_process_message(self, subscription: Any, message: Any) -> None:
        self._add("pre_process_message", message)

    def post_process_message_success(self, subscription: Any, message: Any, outcome: Any) -> None:
        self._add("post_process_message_success", outcome)

    def post_process_message_failure(self, subscription: Any, message: Any, outcome: Any) -> None:
        self._add("post_process_message_failure", outcome)

    def post_process_message(self, subscription: Any, message: Any, outcome: Any) -> None:
        self._add("post_process_message", (message, outcome))

    def post_ack_failure(self, subscription: Any, message: Any, error: Any) -> None:
        self._add("post_ack_failure", (message, error))

    def pre_worker_start(self, worker: Any) -> None:
        self._add("pre_worker_start", worker)

    def post_worker_start(self, worker: Any) -> None:
        self._add("post_worker_start", worker)

    def pre_worker_stop(self, worker: Any) -> None:
        self._add("pre_worker_stop", worker)

    def post_worker_stop(self, worker: Any) -> None:
        self._add("post_worker_stop", worker)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, *, what: str = ""
) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test with a message (naming
    ``what`` it waited for, if given) if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {what or predicate}")


def settings(**kw: Any) -> Settings:
    """Settings for a test: no environment, a fixed project id, ``kw`` on top."""
    return Settings.load(environ={}, gc_project_id="relay-test", **kw)


class StalledTransport(MemoryTransport):
    """Publishes never confirm until the test says so (a slow or unreachable Pub/Sub)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Future[str]] = []

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        future: Future[str] = Future()
        self.waiting.append(future)
        return future

    def confirm(self, n: int) -> None:
        for future in self.waiting[:n]:
            future.set_result("id")
        del self.waiting[:n]
