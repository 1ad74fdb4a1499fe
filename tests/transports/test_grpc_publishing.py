"""relay's ``Publisher`` on the grpc transport: attribute names google's
``publish()`` cannot carry, end to end on relay's server; and ``PublishFuture``,
whose futures share their batch's lock."""

from __future__ import annotations

import threading
import time
from concurrent.futures import as_completed, wait

import pytest

from relay.middleware import MiddlewareChain
from relay.provisioning import ensure_subscription
from relay.publisher import Publisher
from relay.transports.base import FlowControl, SubscriptionSpec
from relay.transports.futures import BatchCondition, PublishFuture
from tests.transports.test_contract import Inbox


def test_the_publisher_sends_topic_and_data_attributes_on_grpc(
    make_grpc_transport, unique_name
):
    transport, _ = make_grpc_transport()
    topic = unique_name("names")
    transport.ensure_topic(topic)
    spec = SubscriptionSpec(name=f"{topic}-sub", topic=topic)
    ensure_subscription(transport, spec)
    publisher = Publisher(transport, settings=transport.settings, middleware=MiddlewareChain())
    message_id = publisher.publish(
        topic, {"id": 7}, attrs={"topic": "x", "data": "y"}, kind="order"
    ).result(10)
    inbox = Inbox()
    stream = transport.subscribe(spec.name, inbox, FlowControl())
    (message,) = inbox.wait_for(1)
    assert message.message_id == message_id
    assert message.data == b'{"id":7}'
    attributes = dict(message.attributes)
    assert attributes.pop("published_at")
    assert attributes == {"topic": "x", "data": "y", "kind": "order"}
    message.ack()
    stream.close(timeout=10)


# ---------------------------------------------------------------- PublishFuture
def batch(n: int) -> list[PublishFuture]:
    condition = BatchCondition()
    return [PublishFuture(condition) for _ in range(n)]


def later(delay: float, fn, *args) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), fn(*args)))
    thread.start()
    return thread


@pytest.mark.parametrize("method", ["result", "exception"])
def test_a_wait_outlives_the_other_futures_of_its_batch(method: str) -> None:
    first, second = batch(2)
    outcome: list[object] = []

    def waiter() -> None:
        try:
            outcome.append(getattr(second, method)(timeout=5))
        except BaseException as exc:  # a spurious wake-up would end here as TimeoutError
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    first.set_result("1")  # notifies the batch's condition: wakes the waiter of second
    time.sleep(0.1)
    assert outcome == [] and thread.is_alive(), "woken by another future, it kept waiting"
    second.set_result("2")
    thread.join(5)
    assert outcome == (["2"] if method == "result" else [None])


def test_result_times_out_and_then_returns_once_set() -> None:
    first, second = batch(2)
    later(0.05, first.set_result, "1")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        second.result(timeout=0.3)
    assert time.monotonic() - started >= 0.29
    with pytest.raises(TimeoutError):
        second.exception(timeout=0)
    second.set_result("2")
    assert second.result(timeout=0) == "2" and second.exception() is None


def test_a_future_that_failed_with_timeout_error_raises_it_at_once() -> None:
    (future,) = batch(1)
    error = TimeoutError("the broker took too long")
    future.set_exception(error)
    with pytest.raises(TimeoutError) as info:
        future.result()
    assert info.value is error
    assert future.exception() is error


def test_wait_as_completed_and_callbacks_work_on_shared_locks_and_cancel_is_refused() -> None:
    futures = batch(3)
    called: list[str] = []
    futures[0].add_done_callback(lambda f: called.append(f.result()))
    assert not futures[2].cancel()  # a publish cannot be called back, as with google's futures
    assert not futures[2].cancelled() and not futures[2].done()
    later(0.05, futures[0].set_result, "a")
    later(0.1, futures[1].set_result, "b")
    done, not_done = wait(futures[:2], timeout=5)
    assert done == set(futures[:2]) and not not_done
    assert sorted(f.result() for f in as_completed(futures[:2], timeout=5)) == ["a", "b"]
    assert called == ["a"]
    futures[1].add_done_callback(lambda f: called.append(f.result()))  # done: runs at once
    assert called == ["a", "b"]


def test_a_publish_future_starts_as_a_plain_pending_future() -> None:
    from concurrent.futures import Future

    (future,) = batch(1)
    assert vars(future).keys() == vars(Future()).keys()
    assert not future.done() and not future.running() and not future.cancelled()
    assert "pending" in repr(future)


def test_kept_resolved_futures_cost_the_collector_one_object_each() -> None:
    import gc

    gc.collect()
    before = len(gc.get_objects())
    error = RuntimeError("refused")
    futures = batch(1000)
    for n, future in enumerate(futures):
        future.add_done_callback(lambda f: None)
        if n % 2:
            future.set_result(str(n))
        else:
            future.set_exception(error)
    gc.collect()
    assert len(gc.get_objects()) - before < 1100  # a plain Future: 12 each


def test_resolved_futures_still_serve_waits_and_callbacks_from_many_threads() -> None:
    futures = batch(50)
    waiting = threading.Thread(target=lambda: wait(futures[:1], timeout=5))
    waiting.start()  # its waiter is in the first future's list as it resolves
    time.sleep(0.05)
    for n, future in enumerate(futures):
        future.set_result(str(n))
    waiting.join(5)
    assert not waiting.is_alive()
    seen: list[int] = []
    errors: list[BaseException] = []

    def use() -> None:
        try:
            for _ in range(20):
                done, _ = wait(futures, timeout=5)
                assert len(done) == 50
                assert [f.result() for f in as_completed(futures, timeout=5)]
            futures[3].add_done_callback(lambda f: seen.append(int(f.result())))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == [] and seen == [3, 3, 3, 3]


def test_a_wait_on_resolved_and_pending_futures_together_leaves_no_waiter_behind() -> None:
    from relay.transports import futures as futures_module

    resolved, pending = batch(2)
    resolved.set_result("1")
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(wait([resolved, pending], 5)))
    thread.start()  # installs its waiter in both, the resolved one's list being shared
    time.sleep(0.05)
    pending.set_result("2")
    thread.join(5)
    (done_and_not,) = outcome
    assert done_and_not.done == {resolved, pending}  # type: ignore[attr-defined]
    assert futures_module._IDLE_WAITERS == []


def test_resolve_settles_a_batch_wakes_its_waiters_runs_its_callbacks_and_lets_go() -> None:
    from relay.transports import futures as futures_module

    condition = BatchCondition()
    futures = [PublishFuture(condition) for _ in range(4)]
    called: list[str] = []
    futures[1].add_done_callback(lambda f: called.append(f.result()))
    outcome: list[object] = []
    waiting = threading.Thread(target=lambda: outcome.append(wait(futures[:3], 5)))
    sleeping = threading.Thread(target=lambda: outcome.append(futures[2].result(5)))
    waiting.start()
    sleeping.start()
    time.sleep(0.05)
    futures[3].set_result("already")  # resolved before: skipped, keeps its result
    assert futures_module.resolve(condition, futures, ["a", "b", "c", "d"]) == 3
    waiting.join(5)
    sleeping.join(5)
    assert [f.result(0) for f in futures] == ["a", "b", "c", "already"]
    assert called == ["b"]
    assert "c" in outcome and any(getattr(o, "done", None) == set(futures[:3]) for o in outcome)
    assert all(vars(f)["_done_callbacks"] == () for f in futures)  # let go of their lists
    assert futures_module._IDLE_WAITERS == []
    futures[0].add_done_callback(lambda f: called.append(f.result()))  # done: runs at once
    assert called == ["b", "a"]
