"""Publishing: per-topic batches sent from the loop, retried, ordered per key.

``publish()`` (any thread) builds the protobuf message, appends it and its
future to the open batch of its topic (and ordering key) under a lock and
returns: it never touches the network. A batch is sent when it holds
``PUBLISHER_BATCH_MAX_MESSAGES`` messages or ``PUBLISHER_BATCH_MAX_BYTES``
bytes, or ``PUBLISHER_BATCH_MAX_LATENCY`` seconds after its first message,
whichever comes first; the loop is woken once per batch, not per message.
Batches of a topic without ordering key are sent concurrently. Each is
retried on transient errors (google's publisher's list) with exponential
backoff until ``PUBLISHER_RETRY_TIMEOUT`` has passed since it was sent; then
its futures fail with the error, as a ``google.api_core`` exception like
``PubSubTransport``'s.

Ordering keys: one batch per (topic, key) is in flight at a time, in publish
order. When one fails, the messages queued behind it with that key fail too
(an ``OrderingKeyError``, so nothing is sent out of order) and the key is
resumed at once, as ``PubSubTransport`` resumes google's paused keys: later
publishes with that key are sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import grpc
from google.pubsub_v1 import types as gtypes

from relay.errors import TransportError
from relay.transports.futures import BatchCondition, PublishFuture, resolve
from relay.transports.grpc.channel import (
    RETRYABLE_PUBLISH,
    Backoff,
    as_api_error,
    code_of,
    metadata,
)

logger = logging.getLogger("relay.transports.grpc")

PublishResponse = gtypes.PublishResponse.pb()
#: Pub/Sub refuses a publish request over 10 MB.
MAX_REQUEST_BYTES = 10_000_000


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, value: bytes) -> bytes:
    return tag + _varint(len(value)) + value


#: (name, value) -> that attribute's protobuf bytes: names and most values repeat
#: from message to message (``published_at`` never does, and is not kept). Bounded:
#: cleared when full, so values built from data cannot grow it.
_ATTRIBUTE_BYTES: dict[tuple[str, str], bytes] = {}
_ATTRIBUTE_CACHE_SIZE = 1024


def _attribute(item: tuple[str, str]) -> bytes:
    """One ``attributes`` map entry (field 2; in it key = 1, value = 2)."""
    key, value = item
    k = key.encode()
    v = value.encode()
    if len(k) + len(v) < 0x7C:  # the usual short attribute: each length is one byte
        encoded = b"\x12%c\x0a%c%s\x12%c%s" % (len(k) + len(v) + 4, len(k), k, len(v), v)
    else:
        encoded = _field(b"\x12", _field(b"\x0a", k) + _field(b"\x12", v))
    if key != "published_at":
        if len(_ATTRIBUTE_BYTES) >= _ATTRIBUTE_CACHE_SIZE:
            _ATTRIBUTE_BYTES.clear()
        _ATTRIBUTE_BYTES[item] = encoded
    return encoded


def _framed(tag: bytes, value: bytes) -> list[bytes]:
    """``tag``, the length of ``value`` and ``value``, as parts to join."""
    size = len(value)
    if size < 0x80:
        return [b"%c%c" % (tag[0], size), value]
    if size < 0x4000:
        return [b"%c%c%c" % (tag[0], (size & 0x7F) | 0x80, size >> 7), value]
    return [tag, _varint(size), value]


def encode_message(data: bytes, attributes: Mapping[str, str], ordering_key: str) -> bytes:
    """One ``PublishRequest.messages`` entry, as protobuf bytes (field 2 of the
    request; in it PubsubMessage's data = 1, attributes = 2, ordering_key = 5).

    Written by hand, as ``relay.server.wire`` writes responses: building a
    protobuf object per message, then copying it into the request, costs more
    than the whole encoding.
    """
    parts = _framed(b"\x0a", data) if data else []
    cached = _ATTRIBUTE_BYTES.get
    for item in attributes.items():
        parts.append(cached(item) or _attribute(item))
    if ordering_key:
        parts += _framed(b"\x2a", ordering_key.encode())
    return b"".join(_framed(b"\x12", b"".join(parts)))


def _identity(request: bytes) -> bytes:
    return request


class OrderingKeyError(TransportError):
    """Not sent: an earlier message with the same ordering key failed."""


class _Batch:
    __slots__ = ("committed", "condition", "futures", "key", "messages", "size", "topic")

    def __init__(self, topic: str, key: str) -> None:
        self.topic = topic
        self.key = key
        #: Shared by the batch's futures (see ``PublishFuture``).
        self.condition = BatchCondition()
        self.messages: list[bytes] = []
        self.futures: list[PublishFuture] = []
        self.size = 0
        self.committed = False


class Publisher:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, channel: grpc.aio.Channel, settings: Any
    ) -> None:
        self.loop = loop
        self._method = channel.unary_unary(
            "/google.pubsub.v1.Publisher/Publish",
            request_serializer=_identity,
            response_deserializer=PublishResponse.FromString,
        )
        self.max_messages = int(getattr(settings, "publisher_batch_max_messages", 100))
        self.max_bytes = min(
            int(getattr(settings, "publisher_batch_max_bytes", 1_000_000)), MAX_REQUEST_BYTES
        )
        self.max_latency = float(getattr(settings, "publisher_batch_max_latency", 0.01))
        self.retry_timeout = float(settings.publisher_retry_timeout)
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Batch] = {}
        #: (topic, key) -> batches waiting for the one in flight (ordering keys only).
        self._queues: dict[tuple[str, str], deque[_Batch]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Futures left unresolved by the last ``drain()`` (failed by it).
        self.unconfirmed = 0
        #: Publish calls made (batches sent, retries included): for tests and stats.
        self.calls = 0

    # ------------------------------------------------------------ any thread
    def publish(
        self, topic_path: str, data: bytes, attributes: Mapping[str, str], ordering_key: str
    ) -> Future[str]:
        message = encode_message(data, attributes, ordering_key)
        size = len(message)
        slot = (topic_path, ordering_key)
        before = arm = full = None
        with self._lock:
            batch = self._open.get(slot)
            if batch is not None and batch.size + size > self.max_bytes:
                del self._open[slot]
                before = batch  # no room for this one: it goes first, as it is
                batch = None
            if batch is None:
                batch = self._open[slot] = _Batch(topic_path, ordering_key)
                arm = batch
            future = PublishFuture(batch.condition)
            batch.messages.append(message)
            batch.futures.append(future)
            batch.size += size
            if len(batch.messages) >= self.max_messages or batch.size >= self.max_bytes:
                del self._open[slot]
                full = batch
                if arm is batch:
                    arm = None
        call = self.loop.call_soon_threadsafe
        if before is not None:
            call(self._commit, before)
        if full is not None:
            call(self._commit, full)
        if arm is not None:
            call(self._arm, arm)
        return future

    def flush_all(self) -> None:
        """Send every open batch now (any thread)."""
        with self._lock:
            batches = list(self._open.values())
            self._open.clear()
        for batch in batches:
            self.loop.call_soon_threadsafe(self._commit, batch)

    # ------------------------------------------------------------ loop thread
    def _arm(self, batch: _Batch) -> None:
        if self.max_latency <= 0:
            self._commit(batch)
        else:
            self.loop.call_later(self.max_latency, self._commit, batch)

    def _commit(self, batch: _Batch) -> None:
        slot = (batch.topic, batch.key)
        with self._lock:
            if batch.committed:
                return
            batch.committed = True
            if self._open.get(slot) is batch:
                del self._open[slot]
        if not batch.key:
            self._spawn(batch)
            return
        queue = self._queues.get(slot)
        if queue is None:
            self._queues[slot] = deque()
            self._spawn(batch)
        else:
            queue.append(batch)

    def _spawn(self, batch: _Batch) -> None:
        task = self.loop.create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: _Batch) -> None:
        deadline = time.monotonic() + self.retry_timeout
        backoff = Backoff(0.1, 60.0)
        request = _field(b"\x0a", batch.topic.encode()) + b"".join(batch.messages)
        md = metadata(f"topic={batch.topic}")
        error: BaseException | None = None
        while True:
            left = deadline - time.monotonic()
            try:
                self.calls += 1
                response = await self._method(request, timeout=max(0.1, left), metadata=md)
            except asyncio.CancelledError:
                error = TransportError("the transport closed before the publish was confirmed")
                self.unconfirmed += len(batch.futures)
                break
            except Exception as exc:
                delay = backoff.delay()
                if code_of(exc) in RETRYABLE_PUBLISH and time.monotonic() + delay < deadline:
                    await asyncio.sleep(delay)
                    continue
                error = as_api_error(exc)
                break
            ids = response.message_ids
            resolve(batch.condition, batch.futures, ids)
            if len(ids) >= len(batch.futures):
                self._next(batch, failed=False)
                return
            # Pub/Sub answers one id per message; never leave a future waiting forever.
            error = TransportError(
                f"Pub/Sub confirmed {len(ids)} of the {len(batch.futures)} messages "
                f"published to {batch.topic} in one request; the rest are not known to "
                "have been published"
            )
            break
        for future in batch.futures:
            if not future.done():
                future.set_exception(error)
        self._next(batch, failed=True)

    def _next(self, batch: _Batch, *, failed: bool) -> None:
        if not batch.key:
            return
        slot = (batch.topic, batch.key)
        queue = self._queues.get(slot)
        if queue is None:
            return
        if failed:
            with self._lock:  # the open batch of the key fails too: it is behind
                behind = self._open.pop(slot, None)
                if behind is not None:
                    behind.committed = True
                    queue.append(behind)
            skipped = 0
            while queue:
                later = queue.popleft()
                skipped += len(later.futures)
                error = OrderingKeyError(
                    f"not sent: an earlier message with ordering key {batch.key!r} to "
                    f"{batch.topic} failed"
                )
                for future in later.futures:
                    if not future.done():
                        future.set_exception(error)
            logger.warning(
                "an ordered publish to %s failed; %d later message(s) with ordering key %r "
                "failed with it, and the key is resumed: messages published from now on are "
                "sent", batch.topic, skipped, batch.key,
            )
        if queue:
            self._spawn(queue.popleft())
        else:
            del self._queues[slot]

    async def drain(self, timeout: float) -> None:
        """Send what is open and wait for every batch (loop thread)."""
        with self._lock:
            batches = list(self._open.values())
            self._open.clear()
        for batch in batches:
            self._commit(batch)
        end = time.monotonic() + timeout
        while self._tasks and time.monotonic() < end:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, end - time.monotonic()))
        for task in list(self._tasks):
            task.cancel()
        self.unconfirmed = 0
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
