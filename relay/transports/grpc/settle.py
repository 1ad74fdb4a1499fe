"""Acks, nacks and lease extensions: batched from any thread, sent from the loop.

``ack()`` and ``nack()`` run on handler threads. Each appends one tuple to a
lock-guarded list (``Settler.add``); only the first item of a batch wakes the
event loop (one ``call_soon_threadsafe`` per batch, not per message), which
flushes the list ``FLUSH_INTERVAL`` later, or at once when ``FLUSH_SIZE``
items are waiting. A flush releases flow control on the loop thread and sends
the batch as unary ``Acknowledge`` / ``ModifyAckDeadline`` calls of up to
``ACK_IDS_PER_CALL`` ack ids each.

Why unary calls rather than the streaming pull's own requests: an ack sent on
a stream that is breaking is lost without a word, while a unary call says
whether it was applied, and with exactly-once delivery says so per ack id (the
ErrorInfo ``EXACTLY_ONCE_ACKID_FAILURE`` metadata), which is what
``ack_with_response()`` needs; ack ids outlive their stream, so acks keep
working while a stream reconnects, after ``cancel()`` and during ``close()``.
A call per batch of up to 1000 ack ids costs a few microseconds per message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import grpc
from google.pubsub_v1 import types as gtypes

from relay.errors import AckError
from relay.transports.grpc.channel import RETRYABLE_ACK, Backoff, ack_id_errors, code_of, metadata

if TYPE_CHECKING:
    from relay.transports.grpc.consumer import GrpcMessage

logger = logging.getLogger("relay.transports.grpc")

FLUSH_INTERVAL = 0.005
FLUSH_SIZE = 1000
ACK_IDS_PER_CALL = 1000
#: How long an ack/modack batch is retried on transient errors.
ACK_RETRY_DEADLINE = 60.0

ACK = 0
NACK = 1

AcknowledgeRequest = gtypes.AcknowledgeRequest.pb()
ModifyAckDeadlineRequest = gtypes.ModifyAckDeadlineRequest.pb()
_EMPTY_DESERIALIZER: Callable[[bytes], None] = lambda _: None  # noqa: E731

Item = tuple[int, "GrpcMessage", "Future[None] | None"]


class Settler:
    """The transport's queue of settlements, flushed on the loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[Item] = []
        self._armed = False
        self._urgent = False

    def add(self, kind: int, message: GrpcMessage, future: Future[None] | None = None) -> None:
        """Queue one settlement (any thread)."""
        with self._lock:
            items = self._items
            items.append((kind, message, future))
            if not self._armed:
                self._armed = True
                action = self._arm
            elif len(items) >= FLUSH_SIZE and not self._urgent:
                self._urgent = True
                action = self.flush
            else:
                return
        try:
            self._loop.call_soon_threadsafe(action)
        except RuntimeError:  # the loop is closed: the transport is gone
            logger.debug("a settlement after the transport closed was dropped")

    def _arm(self) -> None:
        self._loop.call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Hand everything queued to its stream (loop thread)."""
        with self._lock:
            items, self._items = self._items, []
            self._armed = self._urgent = False
        if not items:
            return
        by_stream: dict[Any, list[Item]] = {}
        for item in items:
            stream = item[1]._pull.stream
            batch = by_stream.get(stream)
            if batch is None:
                by_stream[stream] = [item]
            else:
                batch.append(item)
        for stream, batch in by_stream.items():
            stream.settle(batch)


class Sender:
    """The unary ack/modack calls of one subscription, with retries; tasks tracked."""

    def __init__(self, channel: grpc.aio.Channel, path: str) -> None:
        self.path = path
        self._metadata = metadata(f"subscription={path}")
        self._ack = channel.unary_unary(
            "/google.pubsub.v1.Subscriber/Acknowledge",
            request_serializer=AcknowledgeRequest.SerializeToString,
            response_deserializer=_EMPTY_DESERIALIZER,
        )
        self._modack = channel.unary_unary(
            "/google.pubsub.v1.Subscriber/ModifyAckDeadline",
            request_serializer=ModifyAckDeadlineRequest.SerializeToString,
            response_deserializer=_EMPTY_DESERIALIZER,
        )
        self.tasks: set[asyncio.Task[Any]] = set()
        #: Ack ids the broker confirmed (acks), for tests and stats.
        self.acked = 0

    def _spawn(self, coro: Any) -> None:  # coro: a _send() (its result is not needed)
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def ack(self, ack_ids: Sequence[str], futures: dict[str, Future[None]]) -> None:
        for start in range(0, len(ack_ids), ACK_IDS_PER_CALL):
            chunk = list(ack_ids[start:start + ACK_IDS_PER_CALL])
            self._spawn(self._send(chunk, None, futures))

    def modack(self, ack_ids: Sequence[str], seconds: int) -> None:
        for start in range(0, len(ack_ids), ACK_IDS_PER_CALL):
            chunk = list(ack_ids[start:start + ACK_IDS_PER_CALL])
            self._spawn(self._send(chunk, seconds, {}))

    async def confirm(self, ack_ids: list[str], seconds: int) -> set[str]:
        """Receipt modack (exactly-once delivery): the ack ids the broker refused."""
        failed: set[str] = set()
        for start in range(0, len(ack_ids), ACK_IDS_PER_CALL):
            failed |= await self._send(ack_ids[start:start + ACK_IDS_PER_CALL], seconds, {})
        return failed

    async def _send(
        self, ack_ids: list[str], seconds: int | None, futures: dict[str, Future[None]]
    ) -> set[str]:
        """Send one call (retried); the ack ids that failed for good."""
        what = "ack" if seconds is None else ("nack" if seconds == 0 else "modack")
        failed: set[str] = set()
        backoff = Backoff(0.1, 5.0)
        deadline = time.monotonic() + ACK_RETRY_DEADLINE
        while ack_ids:
            try:
                if seconds is None:
                    await self._ack(
                        AcknowledgeRequest(subscription=self.path, ack_ids=ack_ids),
                        timeout=ACK_RETRY_DEADLINE, metadata=self._metadata,
                    )
                    self.acked += len(ack_ids)
                else:
                    await self._modack(
                        ModifyAckDeadlineRequest(
                            subscription=self.path, ack_ids=ack_ids, ack_deadline_seconds=seconds
                        ),
                        timeout=ACK_RETRY_DEADLINE, metadata=self._metadata,
                    )
            except asyncio.CancelledError:
                _fail(futures, ack_ids, AckError(f"the {what} was not sent: the stream closed"))
                raise
            except Exception as exc:
                errors = ack_id_errors(exc)
                code = code_of(exc)
                if errors:  # exactly-once: some ids failed, the others were applied
                    retry = [a for a in ack_ids if errors.get(a, "").startswith("TRANSIENT_")]
                    for ack_id in ack_ids:
                        reason = errors.get(ack_id)
                        if reason is None:
                            _resolve(futures, ack_id)
                        elif not reason.startswith("TRANSIENT_"):
                            failed.add(ack_id)
                            _fail(futures, [ack_id], AckError(
                                f"Pub/Sub did not apply the {what} ({reason}); the message "
                                "may be delivered again"
                            ), exc)
                    if seconds is None:
                        self.acked += len(ack_ids) - len(errors)
                    ack_ids = retry
                elif code not in RETRYABLE_ACK:
                    logger.warning(
                        "%s of %d message(s) on %s failed: %s", what, len(ack_ids), self.path,
                        code.name,
                    )
                    _fail(futures, ack_ids, AckError(f"the {what} failed: {code.name}"), exc)
                    return failed | set(ack_ids)
                if not ack_ids:
                    return failed
                if time.monotonic() >= deadline:
                    _fail(futures, ack_ids, AckError(f"the {what} failed: {code.name}"), exc)
                    logger.warning("%s of %d message(s) on %s gave up after retries: %s",
                                   what, len(ack_ids), self.path, code.name)
                    return failed | set(ack_ids)
                await asyncio.sleep(backoff.delay())
                continue
            for ack_id in ack_ids:
                _resolve(futures, ack_id)
            return failed
        return failed

    async def drain(self, timeout: float | None) -> None:
        if not self.tasks:
            return
        pending = list(self.tasks)
        _, not_done = await asyncio.wait(pending, timeout=timeout)
        for task in not_done:
            task.cancel()


def _resolve(futures: dict[str, Future[None]], ack_id: str) -> None:
    future = futures.get(ack_id)
    if future is not None and not future.done():
        future.set_result(None)


def _fail(
    futures: dict[str, Future[None]], ack_ids: Sequence[str], error: AckError,
    cause: BaseException | None = None,
) -> None:
    if not futures:
        return
    error.__cause__ = cause
    for ack_id in ack_ids:
        future = futures.get(ack_id)
        if future is not None and not future.done():
            future.set_exception(error)
