"""How a Worker runs received messages through the ``Processor``: one path.

A message the transport hands over goes through the same steps whatever its
handler, and where the handler runs is the only difference:

1. ``InFlight.admit`` takes it in, or refuses it once the worker is stopping
   (the caller nacks a refused message at once, no hooks). The check and the
   record are one step under one lock, and ``InFlight.stop`` sets the stop
   flag under that lock: a message is either refused, or taken in before the
   stop and drained by it. This is the worker's one stop decision.
2. ``Runner.submit`` puts it on the ``HandlerPool`` (sync handler) or the
   worker's event loop, at most ``CONCURRENCY`` at once (``async def``).
3. ``Runner._process`` starts it (unless a drain deadline gave it back while
   it waited), runs ``Processor.run`` and releases it from the record. On a
   pool thread that coroutine is driven by ``drive()``; it never suspends
   there, because a sync handler is called, and a retry's backoff waited for,
   on the thread itself.
4. ``InFlight.drain`` waits for the record to empty; at the deadline it takes
   every message still held, and nacks each exactly once: running or queued,
   sync or async. A ``Delivery`` is settled at most once, so a handler that
   finishes after that has its hooks but not its ack or nack.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar, cast

from relay.aio import Wakeup
from relay.executor import HandlerPool
from relay.subscription import Subscription
from relay.transports.base import ReceivedMessage

logger = logging.getLogger("relay.worker")

T = TypeVar("T")
#: ``(subscription, message, on_loop) -> coroutine``: ``Processor.run``.
Run = Callable[[Subscription, ReceivedMessage, bool], Coroutine[Any, Any, object]]
#: Seconds the async handlers cancelled at a drain deadline get to close their hooks.
CANCEL_GRACE = 1.0


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, on the calling thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("the pipeline suspended on a handler thread; nothing there awaits")


class StopSignal(threading.Event):
    """The worker's stop flag: an Event threads wait on, and coroutines too."""

    def __init__(self) -> None:
        super().__init__()
        self._wakeups: set[Wakeup] = set()
        self._guard = threading.Lock()

    def set(self) -> None:
        with self._guard:
            super().set()
            wakeups, self._wakeups = self._wakeups, set()
        for wakeup in wakeups:
            wakeup.set()

    async def wait_async(self, timeout: float) -> bool:
        """``wait(timeout)`` for a coroutine: True as soon as the flag is set."""
        wakeup = Wakeup()
        with self._guard:
            if self.is_set():
                return True
            self._wakeups.add(wakeup)
        try:
            return await wakeup.wait(timeout)
        finally:
            with self._guard:
                self._wakeups.discard(wakeup)


class Delivery(ReceivedMessage):
    """A received message while the worker holds it: settled at most once.

    The once is a one-item list popped by whoever settles first (``list.pop``
    is atomic): no lock on the path every message takes.
    """

    __slots__ = (
        "_once", "_received", "attributes", "data", "delivery_attempt", "message_id",
        "ordering_key", "publish_time", "subscription",
    )

    def __init__(self, received: ReceivedMessage, sub: Subscription) -> None:
        self._received = received
        self._once = [True]
        self.subscription = sub
        self.data = received.data
        self.attributes = received.attributes
        self.message_id = received.message_id
        self.publish_time = received.publish_time
        self.delivery_attempt = received.delivery_attempt
        self.ordering_key = received.ordering_key

    @property
    def settled(self) -> bool:
        return not self._once

    def claim(self) -> bool:
        """True for the first caller only: it settles the message."""
        try:
            return self._once.pop()
        except IndexError:
            return False

    def ack(self) -> None:
        if self.claim():
            self._received.ack()

    def nack(self) -> None:
        if self.claim():
            self._received.nack()

    def ack_with_response(self) -> Future[None]:
        if self.claim():
            return self._received.ack_with_response()
        ignored: Future[None] = Future()
        ignored.set_result(None)
        return ignored


class InFlight:
    """The one record of the messages a worker holds: taken in, not yet finished.

    ``admit`` and ``stop`` share a lock (the stop decision); handler threads
    release without it (``set.discard`` is atomic), and take it only to wake a
    drain once the worker is stopping.
    """

    def __init__(self, stopping: StopSignal) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._held: set[Delivery] = set()
        self._stopping = stopping

    def __len__(self) -> int:
        return len(self._held)

    def admit(self, received: ReceivedMessage, sub: Subscription) -> Delivery | None:
        """Take a message in; None once the worker is stopping."""
        with self._lock:
            if self._stopping.is_set():
                return None
            delivery = Delivery(received, sub)
            self._held.add(delivery)
            return delivery

    def holds(self, delivery: Delivery) -> bool:
        """False once the message was released, or given back at a drain deadline."""
        return delivery in self._held

    def release(self, delivery: Delivery) -> None:
        self._held.discard(delivery)
        if self._stopping.is_set() and not self._held:
            with self._cond:
                self._cond.notify_all()

    def stop(self) -> None:
        """The stop decision: from here on ``admit`` refuses."""
        with self._lock:
            self._stopping.set()

    def drain(self, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` for the record to empty; then nack, once each,
        the messages still held, and return those not settled before."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._held and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.1))
            held, self._held = list(self._held), set()  # list(): one step under the GIL
        # claimed here: whatever their handlers do next is not sent
        given_back = [delivery for delivery in held if delivery.claim()]
        for delivery in given_back:
            try:
                delivery._received.nack()
            except Exception:
                logger.exception("nacking message %s failed", delivery.message_id)
        return given_back


class Runner:
    """Where handlers run: the ``HandlerPool`` for sync ones, the worker's loop for
    ``async def`` ones; the same ``_process`` begins and finishes both."""

    def __init__(self, run: Run, record: InFlight, concurrency: int) -> None:
        self._run = run
        self._record = record
        self._concurrency = concurrency
        self._pool: HandlerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, with_loop: bool) -> None:
        self._pool = HandlerPool(self._concurrency)
        if not with_loop:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._semaphore = asyncio.Semaphore(self._concurrency)
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._loop_thread = threading.Thread(target=run, name="relay-asyncio", daemon=True)
        self._loop_thread.start()
        ready.wait()

    def submit(self, delivery: Delivery) -> None:
        """Hand a message over to where its handler runs; returns at once."""
        try:
            if delivery.subscription.is_async:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._spawn, delivery)
            else:
                assert self._pool is not None
                self._pool.submit(self._on_thread, delivery)
        except Exception:  # shut down: a drain deadline came first
            logger.debug("message %s came too late to run", delivery.message_id, exc_info=True)
            delivery.nack()
            self._record.release(delivery)

    def _on_thread(self, delivery: Delivery) -> None:
        drive(self._process(delivery, on_loop=False))

    def _spawn(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._on_loop(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_loop(self, delivery: Delivery) -> None:
        assert self._semaphore is not None
        async with self._semaphore:
            await self._process(delivery, on_loop=True)

    async def _process(self, delivery: Delivery, *, on_loop: bool) -> None:
        if not self._record.holds(delivery):
            return  # given back at a drain deadline while it waited: never started
        try:
            await self._run(delivery.subscription, delivery, on_loop)
        except Exception:
            logger.exception("processing message %s crashed", delivery.message_id)
        finally:
            self._record.release(delivery)

    def drain(self, timeout: float) -> list[Delivery]:
        """``InFlight.drain``, then drop what is queued and cancel async handlers
        still running (their hooks close; their ack or nack is ignored)."""
        given_back = self._record.drain(timeout)
        if self._pool is not None:
            self._pool.shutdown(drop_queued=True)
        loop = self._loop
        if loop is not None and given_back:
            try:
                cancelling = asyncio.run_coroutine_threadsafe(self._cancel_tasks(), loop)
                cancelling.result(CANCEL_GRACE + 0.5)
            except Exception:  # the loop is blocked (a handler that never awaits)
                logger.warning("the async handlers cancelled at the drain deadline did not "
                               "end within %.1f s", CANCEL_GRACE)
        return given_back

    async def _cancel_tasks(self) -> None:
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_GRACE)

    def close(self) -> None:
        """Stop the event loop (after the streams closed)."""
        if self._pool is not None:
            self._pool.shutdown()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)
