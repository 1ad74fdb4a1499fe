"""Task results: the handle, statuses, failures, the memory backend, Pub/Sub replies on
the memory transport, and no result work at all when results are off."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any

import orjson
import pytest

import relay
from relay import (
    AsyncResult,
    ConfigurationError,
    MiddlewareChain,
    PublishError,
    Settings,
    TaskFailed,
    TaskStatus,
    UnrecoverableError,
    task,
)
from relay.limits import MAX_PAYLOAD_BYTES
from relay.replies import REPLY_EXPIRATION, REPLY_RETENTION, PubSubReplies
from relay.results import MemoryResults, ResultBackend, ResultsMiddleware, TaskRecord
from relay.testing import memory_app

from .helpers import wait_for

attempts: dict[str, int] = {}
gate = threading.Event()


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def flaky(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        raise ConnectionError(f"{key}: first try fails")
    gate.wait(5)
    return f"{key} on try {attempts[key]}"


@task(dead_letter_topic="tasks-dead", max_delivery_attempts=5)
def always_fails() -> None:
    raise ValueError("out of stock")


@task
def refuses() -> None:
    raise UnrecoverableError("order 7 no longer exists")


@task
def huge() -> str:
    return "x" * MAX_PAYLOAD_BYTES


@task
def opaque() -> object:
    return object()


@task
def waits() -> str:
    gate.wait(5)
    return "done"


@task(ignore_result=True)
def fire_and_forget() -> None: ...


@pytest.fixture(autouse=True)
def _reset() -> None:
    attempts.clear()
    gate.clear()



# --------------------------------------------------------------- results off
def test_without_results_the_handle_says_how_to_enable_them_and_the_worker_does_nothing() -> None:
    with memory_app() as env:
        assert not any(isinstance(m, ResultsMiddleware) for m in env.middleware)
        with env.worker([add]) as worker:
            handle = add.delay(1, 2)
            assert "relay_reply_to" not in env.published[0].attributes
            with pytest.raises(ConfigurationError, match="task results are not enabled: set "
                                                         "RESULTS='pubsub'"):
                handle.result()
            with pytest.raises(ConfigurationError, match="RESULTS="):
                handle.status()
            name = add.resolve(env.settings).name
            wait_for(lambda: env.transport.stats(name)["acked"] == 1, what="the task to run")
        assert [r.topic for r in env.published] == [add.topic]  # no outcome sent anywhere
        assert not any(isinstance(m, ResultsMiddleware) for m in worker.middleware)
        assert handle.id and repr(handle).startswith("<AsyncResult")


def test_results_setting_puts_one_results_middleware_first() -> None:
    logging_middleware = "relay.contrib.logging_middleware.LoggingMiddleware"
    settings = Settings(results="memory", middleware=(logging_middleware,))
    chain = MiddlewareChain.from_settings(settings)
    assert isinstance(chain.middleware[0], ResultsMiddleware)
    assert isinstance(chain.middleware[0].backend, MemoryResults)
    listed = Settings(results="memory", middleware=(ResultsMiddleware(MemoryResults()),))
    assert len(MiddlewareChain.from_settings(listed)) == 1


# ------------------------------------------------------------------ statuses
def test_pending_started_succeeded() -> None:
    with memory_app(RESULTS="memory") as env:
        worker = env.worker([waits])
        worker.setup()
        handle = waits.delay()
        assert handle.status() == "pending" and not handle.ready()
        with worker:
            wait_for(lambda: handle.status() is not TaskStatus.PENDING, what="the task to start")
            assert handle.status() is TaskStatus.STARTED
            gate.set()
            assert handle.result(timeout=5) == "done"
        assert handle.ready() and handle.successful() and not handle.failed()


def test_a_retried_task_shows_started_until_an_attempt_ends_it() -> None:
    with memory_app(RESULTS="pubsub") as env, env.worker([flaky]):
        handle = flaky.delay("a")
        wait_for(lambda: attempts.get("a") == 2, what="the second attempt")
        assert handle.status() is TaskStatus.STARTED  # and never failed in between
        gate.set()
        assert handle.result(timeout=5) == "a on try 2"
        sent = [orjson.loads(r.data) for r in env.published if r.topic == "relay-results"]
    assert [(r["status"], r["attempt"]) for r in sent] == [
        ("started", 1), ("started", 2), ("succeeded", 2)]


def test_a_failure_is_reraised_as_task_failed_with_the_remote_type_and_message() -> None:
    with memory_app(RESULTS="memory", DEFAULT_RETRY_POLICY=None) as env:
        handle = refuses.delay()
        env.deliver([refuses], raise_errors=False)
        with pytest.raises(TaskFailed) as caught:
            handle.result(timeout=1)
        failure = caught.value
        assert (failure.type, failure.message) == (
            "relay.errors.UnrecoverableError", "order 7 no longer exists")
        assert str(failure) == (
            f"task {__name__}.refuses ({handle.id}) failed: relay.errors.UnrecoverableError: "
            "order 7 no longer exists")
        assert handle.failed()

        # Nacked failures become final on the last delivery a dead-letter policy allows.
        with env.worker([always_fails]):
            doomed = always_fails.delay()
            with pytest.raises(TaskFailed, match="ValueError: out of stock"):
                doomed.result(timeout=5)
        name = always_fails.resolve(env.settings).name
        assert env.transport.stats(name)["nacked"] == 5
        assert env.results is not None
        record = env.results.get(doomed.id)
        assert record is not None and record.attempt == 5


def test_a_result_that_cannot_be_sent_fails_the_handle_but_not_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with memory_app(RESULTS="memory") as env:
        too_big, not_json = huge.delay(), opaque.delay()
        outcomes = env.deliver([huge, opaque])
        assert [o.action.value for o in outcomes] == ["ack", "ack"]  # the tasks ran
        with pytest.raises(TaskFailed, match="the task ran, but its result encodes to "
                                             "1048\\d{4} bytes and a Pub/Sub message holds at "
                                             f"most {MAX_PAYLOAD_BYTES};"):
            too_big.result(timeout=1)
        with pytest.raises(TaskFailed, match=r"it returned object <object object .*cannot be "
                                             r"sent as JSON"):
            not_json.result(timeout=1)
    assert "relay.results.ResultError" in str(too_big._backend.get(too_big.id))  # type: ignore[union-attr]
    assert sum("succeeded but" in r.message for r in caplog.records) == 2


def test_result_times_out_and_awaits() -> None:
    with memory_app(RESULTS="memory") as env:
        handle = add.delay(2, 3)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"not finished within 0.05 s \(status pending\)"):
            handle.result(timeout=0.05)
        assert time.monotonic() - started < 1
        env.deliver([add])

        async def both() -> tuple[Any, Any]:
            return await handle, await add.delay(4, 4).aresult(timeout=0.05)

        with pytest.raises(TimeoutError):
            asyncio.run(both())
        assert asyncio.run(handle.aresult(timeout=1)) == 5


def test_a_task_that_was_never_sent_raises_publish_error() -> None:
    with memory_app(RESULTS="memory") as env:
        env.transport.fail_publishes = ConnectionError("unreachable")
        handle = add.delay(1, 1)
        with pytest.raises(PublishError, match="ConnectionError: unreachable"):
            handle.status()
        with pytest.raises(PublishError):
            handle.result(timeout=1)


def test_ignore_result_sends_no_address_and_stores_nothing() -> None:
    with memory_app(RESULTS="memory") as env:
        handle = fire_and_forget.delay()
        env.deliver([fire_and_forget])
        assert env.results is not None and env.results.get(handle.id) is None
        with pytest.raises(ConfigurationError, match="ignore_result=True"):
            handle.result()


def test_async_result_by_id_reads_the_same_backend() -> None:
    with memory_app(RESULTS="memory") as env:
        sent = add.delay(20, 22)
        env.deliver([add])
        assert AsyncResult(sent.id).result(timeout=1) == 42
        with pytest.raises(ConfigurationError, match="non-empty string"):
            AsyncResult("")


# -------------------------------------------------------------- other backends
class DictBackend(ResultBackend):
    """What a shared store (Redis, a database) would do, in a dict."""

    stored: dict[str, bytes] = {}

    def store(self, record: TaskRecord, payload: bytes, reply_to: str | None) -> None:
        old = self.get(record.id)
        if record.supersedes(old):
            self.stored[record.id] = payload

    def get(self, task_id: str) -> TaskRecord | None:
        raw = self.stored.get(task_id)
        return None if raw is None else TaskRecord.from_data(orjson.loads(raw))


def test_a_backend_of_your_own_by_dotted_path() -> None:
    with memory_app(RESULTS=f"{__name__}.DictBackend") as env:
        handle = add.delay(1, 2)
        env.deliver([add])
        assert handle.result(timeout=1) == 3  # the base class's polling wait
        assert orjson.loads(DictBackend.stored[handle.id])["status"] == "succeeded"
    with pytest.raises(ConfigurationError, match=r"is not a relay.results.ResultBackend subclass"):
        memory_app(RESULTS="relay.settings.Settings").__enter__()


def test_records_that_arrive_out_of_order_never_undo_an_outcome() -> None:
    done = TaskRecord("t", "x", TaskStatus.SUCCEEDED, result=1, at=2.0)
    late = TaskRecord("t", "x", TaskStatus.STARTED, at=3.0)
    assert not late.supersedes(done) and done.supersedes(late)
    assert TaskRecord("t", "x", TaskStatus.STARTED, at=4.0).supersedes(late)
    with pytest.raises(ValueError, match="task record version 2; this relay reads version 1"):
        TaskRecord.from_data({**done.to_data(), "v": 2})


# ----------------------------------------------------- Pub/Sub replies, in memory
def test_pubsub_replies_travel_on_a_reply_subscription_of_their_own() -> None:
    with memory_app(RESULTS="pubsub", TOPIC_PREFIX="dev-") as env:
        backend = env.results
        assert isinstance(backend, PubSubReplies)
        worker = env.worker([add])
        worker.setup()
        handle = add.delay(2, 3)
        spec = env.transport.get_subscription(backend.subscription or "")
        assert spec is not None and spec.topic == "dev-relay-results"
        assert spec.name == f"dev-relay-results-reply-{backend.address}"
        assert spec.filter == f'attributes.relay_reply_to = "{backend.address}"'
        assert (spec.expiration_ttl, spec.message_retention) == (REPLY_EXPIRATION, REPLY_RETENTION)
        assert env.published[0].attributes["relay_reply_to"] == backend.address
        with worker:
            assert handle.result(timeout=5) == 5
        replies = [r for r in env.published if r.topic == "dev-relay-results"]
        assert [orjson.loads(r.data)["status"] for r in replies] == ["started", "succeeded"]
        assert replies[1].attributes["relay_task_id"] == handle.id
        name = backend.subscription
    assert name is not None and env.transport.get_subscription(name) is None  # deleted on close


def test_replies_nobody_waits_for_are_acked_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with memory_app(RESULTS="pubsub") as env:
        backend = env.results
        assert isinstance(backend, PubSubReplies)
        worker = env.worker([add])
        worker.setup()
        kept, dropped = add.delay(1, 1), add.delay(2, 2)
        dropped_id = dropped.id
        del dropped
        gc.collect()
        # Another caller's reply (the emulator does not filter), and garbage.
        env.transport.publish("relay-results", b"{}", {"relay_reply_to": "someone-else"})
        mine = {"relay_reply_to": backend.address or ""}
        env.transport.publish("relay-results", b"not json", mine)
        with caplog.at_level(logging.DEBUG, "relay.results"), worker:
            assert kept.result(timeout=5) == 2
            name = backend.subscription or ""
            wait_for(lambda: env.transport.stats(name)["acked"] == 6, what="every reply acked")
        stats = env.transport.stats(name)
        assert stats["acked"] == 6 and stats["nacked"] == 0  # 2 x (started, succeeded) + 2
        assert backend.get(dropped_id) is None
        assert f"outcome of task {dropped_id} dropped: no handle holds it" in caplog.text
        assert "is not a task record and was dropped" in caplog.text


def test_a_worker_whose_outcome_cannot_be_published_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with memory_app(RESULTS="pubsub") as env:
        handle = add.delay(1, 1)
        env.transport.fail_publishes = ConnectionError("results topic unreachable")
        env.deliver([add])
        assert handle.status() is TaskStatus.PENDING
    assert f"succeeded outcome of task {__name__}.add ({handle.id}) could not be published" \
        in caplog.text


def test_the_process_wide_app_closes_its_reply_subscription() -> None:
    with memory_app(RESULTS="pubsub") as env:
        add.delay(1, 1)
        backend = env.results
        assert isinstance(backend, PubSubReplies) and backend.subscription
        relay.get_app().close()
        assert env.transport.get_subscription(backend.subscription) is None


def test_results_settings_are_checked_when_loaded() -> None:
    with pytest.raises(ConfigurationError, match=r"RESULTS: 'redis'; expected None \(no "
                                                 r"results\), 'pubsub'"):
        Settings.load({"RESULTS": "redis"}, environ={})
    with pytest.raises(ConfigurationError, match="invalid RESULTS_TOPIC name 'goog-results'"):
        Settings.load({"RESULTS_TOPIC": "goog-results"}, environ={})
    loaded = Settings.load(environ={"RELAY_RESULTS": "off", "RELAY_RESULTS_TOPIC": "answers"})
    assert (loaded.results, loaded.results_topic) == (None, "answers")
    assert Settings.load(environ={"RELAY_RESULTS": "pubsub"}).results == "pubsub"
