"""Streaming pulls on the transport's event loop: delivery, flow control, ordering.

A ``GrpcStream`` (one subscription) runs ``STREAMS_PER_SUBSCRIPTION`` pulls;
each ``_Pull`` is one task reopening one StreamingPull call. Everything here
but ``GrpcMessage.ack``/``nack`` and ``GrpcStream``'s public methods runs on
the loop thread, so the state needs no lock. Leases live in ``lease.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import grpc
from google.pubsub_v1 import types as gtypes

from relay.errors import TransportError
from relay.transports.base import FlowControl, ReceivedMessage
from relay.transports.grpc.channel import (
    RETRYABLE_STREAM,
    Backoff,
    as_api_error,
    code_of,
    metadata,
)
from relay.transports.grpc.health import Health
from relay.transports.grpc.settle import ACK, NACK

if TYPE_CHECKING:
    from relay.transports.grpc.stream import GrpcStream

logger = logging.getLogger("relay.transports.grpc")

StreamingPullRequest = gtypes.StreamingPullRequest.pb()
StreamingPullResponse = gtypes.StreamingPullResponse.pb()
#: A streaming pull's deadline without STREAM_LIFETIME (google's client: 30 min).
DEFAULT_LIFETIME = 1800.0
#: Seconds between heartbeats on an open streaming pull (google's client: 30).
HEARTBEAT_INTERVAL = 30.0
HEARTBEAT = StreamingPullRequest()
#: Seconds a reopened call must stay up to count as connected without a message.
CONFIRM_AFTER = 1.0
_UTC = timezone.utc


class GrpcMessage(ReceivedMessage):
    """One delivery; ``ack``/``nack`` are cheap and thread-safe and settle once."""

    __slots__ = (
        "_pm", "_pull", "_settled", "ack_id", "attributes", "data", "delivered",
        "delivery_attempt", "expires_at", "message_id", "ordering_key", "received_at",
        "released", "size",
    )

    #: One lock for every message's settle-once check: held for a flag flip only.
    _settle_lock = threading.Lock()

    def __init__(self, received: Any, pull: _Pull, now: float) -> None:
        pm = received.message
        self._pm = pm
        self._pull = pull
        self._settled = False
        self.ack_id: str = received.ack_id
        self.data = pm.data
        self.attributes = pm.attributes  # the protobuf map itself (read-only use)
        self.message_id = pm.message_id
        self.ordering_key = pm.ordering_key
        # None unless the subscription has a dead-letter policy (Pub/Sub sends 0).
        self.delivery_attempt = received.delivery_attempt or None
        self.size: int = pm.ByteSize()
        self.received_at = now
        #: When its lease ends (monotonic); the leaser extends it ahead of that.
        self.expires_at = now + pull.stream.lease.stream_ack_deadline
        self.delivered = False
        self.released = False

    @property
    def publish_time(self) -> datetime | None:
        """Converted when read: most handlers never look at it."""
        ts = self._pm.publish_time
        if not ts.seconds and not ts.nanos:
            return None
        return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, _UTC)

    @publish_time.setter
    def publish_time(self, value: datetime | None) -> None:
        raise AttributeError("publish_time is read-only")

    def _claim(self) -> bool:
        with self._settle_lock:
            if self._settled:
                return False
            self._settled = True
            return True

    def ack(self) -> None:
        if self._claim():
            self._pull.settler.add(ACK, self)

    def nack(self) -> None:
        if self._claim():
            self._pull.settler.add(NACK, self)

    def ack_with_response(self) -> Future[None]:
        future: Future[None] = Future()
        if self._claim():
            self._pull.settler.add(ACK, self, future)
        else:
            future.set_result(None)
        return future

    def __repr__(self) -> str:
        return f"<GrpcMessage id={self.message_id}>"


class _Pull:
    """One StreamingPull, reopened until the stream stops; its share of flow control."""

    def __init__(self, stream: GrpcStream, index: int, flow: FlowControl) -> None:
        self.stream = stream
        self.settler = stream.settler
        self.index = index
        self.max_messages = flow.max_messages
        self.max_bytes = flow.max_bytes
        self.outstanding = 0
        self.outstanding_bytes = 0
        #: ack id -> message, for every message leased to this pull and not settled.
        self.leased: dict[str, GrpcMessage] = {}
        self.ready: deque[GrpcMessage] = deque()
        self.keys: dict[str, deque[GrpcMessage]] = {}
        self.call: Any = None
        self.open = False
        self.retrying = False
        self.ended = asyncio.Event()
        self.health = Health(stream.heal_after)
        self.task: asyncio.Task[None] | None = None
        #: The last receipt confirmation (exactly-once delivery), for their order.
        self._receipts: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- the call
    async def run(self) -> None:
        stream = self.stream
        backoff = Backoff(0.1, 10.0)
        try:
            while not stream.cancelled:
                self.health.opened_at = time.monotonic()
                last: BaseException | None = None
                try:
                    code, details = await self._call_once(backoff)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    last = exc
                    code = code_of(exc)
                    details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
                finally:
                    self.open = False
                    self.call = None
                if stream.cancelled:
                    break
                lifetime_over = (
                    code is grpc.StatusCode.DEADLINE_EXCEEDED
                    and time.monotonic() - self.health.opened_at >= stream.lifetime - 1
                )
                if code is grpc.StatusCode.OK or lifetime_over:
                    continue  # a routine end (the server closed it, or STREAM_LIFETIME)
                if code in RETRYABLE_STREAM:
                    self.health.ended(code.name, details or "")
                    self.retrying = True
                    logger.debug("streaming pull %s ended with %s: %s; reopening",
                                 stream.path, code.name, details)
                    await asyncio.sleep(backoff.delay())
                    continue
                # As google's client ends it: with the api_core exception (NotFound, ...).
                error = as_api_error(last) if last is not None else TransportError(
                    f"the streaming pull of {stream.path} failed: {code.name}: {details}"
                )
                stream.fail(error)
                break
        finally:
            self.open = False
            self.ended.set()

    async def _call_once(self, backoff: Backoff) -> tuple[grpc.StatusCode, str]:
        stream = self.stream
        call = stream.pull_method(timeout=stream.lifetime, metadata=stream.call_metadata)
        self.call = call
        self.open = True
        await call.write(StreamingPullRequest(
            subscription=stream.path,
            stream_ack_deadline_seconds=stream.lease.stream_ack_deadline,
            max_outstanding_messages=self.max_messages,
            max_outstanding_bytes=self.max_bytes,
            client_id=stream.client_id,
        ))
        if stream.cancelled:
            await call.done_writing()
        elif self.retrying:
            asyncio.get_running_loop().call_later(CONFIRM_AFTER, self._confirm, call)
        read = call.read
        received = self._received
        while True:
            response = await read()
            if response is grpc.aio.EOF:
                break
            self.retrying = False
            if self.health.error is not None:
                self.health.healed()
            backoff.reset()
            received(response)
        return await call.code(), await call.details()

    async def heartbeat(self) -> None:
        """An empty request on the open call: Pub/Sub closes a stream its client
        has sent nothing on for long (google's client sends one every 30 s)."""
        call = self.call
        if call is None or not self.open or self.stream.cancelled or call.done():
            return
        try:
            await call.write(HEARTBEAT)
        except Exception:  # the call is ending: the next one starts afresh
            logger.debug("a heartbeat on %s failed", self.stream.path, exc_info=True)

    def _confirm(self, call: Any) -> None:
        """A reopened call still up after ``CONFIRM_AFTER`` s works, messages or not."""
        if self.call is call and not call.done():
            self.retrying = False

    def half_close(self) -> None:
        """Stop receiving: the server ends a half-closed call (loop thread)."""
        call = self.call
        if call is not None and self.open:
            asyncio.get_running_loop().create_task(_done_writing(call))

    def cancel_call(self) -> None:
        if self.call is not None:
            self.call.cancel()

    # ---------------------------------------------------------------- delivery
    def _received(self, response: Any) -> None:
        stream = self.stream
        props = response.subscription_properties
        if props.exactly_once_delivery_enabled != stream.lease.exactly_once:
            stream.lease.exactly_once = props.exactly_once_delivery_enabled
        now = time.monotonic()
        leased = self.leased
        if stream.lease.exactly_once:
            messages = [GrpcMessage(received, self, now) for received in
                        response.received_messages]
            for message in messages:
                leased[message.ack_id] = message
            previous, self._receipts = self._receipts, None
            task = asyncio.get_running_loop().create_task(self._receipt(messages, previous))
            self._receipts = task
            stream.sender.tasks.add(task)
            task.add_done_callback(stream.sender.tasks.discard)
            return
        for received in response.received_messages:
            message = GrpcMessage(received, self, now)
            leased[message.ack_id] = message
            if stream.cancelled:
                stream.hold(message)
            else:
                self._offer(message)
        self.pump()

    async def _receipt(
        self, messages: list[GrpcMessage], previous: asyncio.Task[None] | None
    ) -> None:
        """Exactly-once delivery, as google's client does it: modack on receipt and
        deliver only the messages whose lease the broker confirmed (in order of
        receipt: each batch waits for the one before it)."""
        stream = self.stream
        failed = await stream.sender.confirm(
            [m.ack_id for m in messages], stream.lease.deadline()
        )
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        for message in messages:
            if message.ack_id in failed:
                message.released = True  # expired on the way: not delivered at all
                self.leased.pop(message.ack_id, None)
            elif stream.cancelled:
                stream.hold(message)
            elif not message.released:
                self._offer(message)
        self.pump()

    def _offer(self, message: GrpcMessage) -> None:
        key = message.ordering_key
        if key:
            waiting = self.keys.get(key)
            if waiting is not None:
                waiting.append(message)  # one message of a key out at a time
                return
            self.keys[key] = deque()
        self.ready.append(message)

    def pump(self) -> None:
        """Deliver what flow control has room for (loop thread)."""
        ready = self.ready
        stream = self.stream
        while ready and not stream.cancelled:
            message = ready[0]
            if self.outstanding and (
                self.outstanding >= self.max_messages
                or self.outstanding_bytes + message.size > self.max_bytes
            ):
                return
            ready.popleft()
            self.outstanding += 1
            self.outstanding_bytes += message.size
            message.delivered = True
            try:
                stream.on_message(message)
            except BaseException as exc:  # a callback bug ends the stream, visibly
                message.nack()
                stream.fail(exc, callback=True)
                return

    def release(self, message: GrpcMessage) -> None:
        """The message is settled or dropped: free its flow control and its key."""
        if message.released:
            return
        message.released = True
        self.leased.pop(message.ack_id, None)
        if message.delivered:
            self.outstanding -= 1
            self.outstanding_bytes -= message.size
        key = message.ordering_key
        if key:
            waiting = self.keys.get(key)
            if waiting:
                self.ready.append(waiting.popleft())
            elif waiting is not None:
                del self.keys[key]

    def undelivered(self) -> list[GrpcMessage]:
        """Messages leased here but never handed to the callback (taken out)."""
        out = list(self.ready)
        self.ready.clear()
        for waiting in self.keys.values():
            out.extend(waiting)
        self.keys.clear()
        return out


async def _done_writing(call: Any) -> None:
    try:
        await call.done_writing()
    except Exception:  # the call is already over
        logger.debug("half-closing a streaming pull failed", exc_info=True)


def pull_method(channel: grpc.aio.Channel) -> Any:
    return channel.stream_stream(
        "/google.pubsub.v1.Subscriber/StreamingPull",
        request_serializer=StreamingPullRequest.SerializeToString,
        response_deserializer=StreamingPullResponse.FromString,
    )


__all__ = ["GrpcMessage", "Health", "metadata", "pull_method"]
