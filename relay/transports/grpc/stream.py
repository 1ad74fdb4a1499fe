"""``GrpcStream``: one subscription's streaming pulls, leases and settlements.

``cancel()`` half-closes every pull (the server then ends it) and stops
deliveries; messages that arrive meanwhile, and nacks issued after it, are
held until the calls have ended, then nacked (a nack to a stream the server
still serves would be handed straight back to it). ``close()`` ends the calls
(waiting up to ``END_WAIT`` for the server, then cancelling them), flushes
every queued ack and nack, waits for the ack calls, and resolves the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from relay.errors import AckError
from relay.transports.base import FlowControl, MessageCallback, Stream
from relay.transports.grpc.channel import metadata
from relay.transports.grpc.consumer import DEFAULT_LIFETIME, GrpcMessage, _Pull
from relay.transports.grpc.lease import Leaser
from relay.transports.grpc.settle import ACK, Item, Sender

if TYPE_CHECKING:
    from relay.transports.grpc.transport import GrpcTransport

logger = logging.getLogger("relay.transports.grpc")

#: Seconds ``close()`` waits for the server to end a half-closed streaming pull.
END_WAIT = 2.0


def share(flow: FlowControl, streams: int) -> FlowControl:
    """One stream's part of the subscription's flow control (rounded up)."""
    if streams <= 1:
        return flow
    return FlowControl(
        max_messages=max(1, math.ceil(flow.max_messages / streams)),
        max_bytes=max(1, math.ceil(flow.max_bytes / streams)),
        max_lease_duration=flow.max_lease_duration,
        max_lease_extension=flow.max_lease_extension,
    )


class GrpcStream(Stream):
    """A subscription's ``STREAMS_PER_SUBSCRIPTION`` streaming pulls; see ``Stream``."""

    def __init__(
        self,
        transport: GrpcTransport,
        subscription: str,
        on_message: MessageCallback,
        flow: FlowControl,
        *,
        streams: int = 1,
    ) -> None:
        core = transport.core()
        self.transport = transport
        self.loop = core.loop_thread.loop
        self.loop_thread = core.loop_thread
        self.settler = core.settler
        self.pull_method = core.pull_method
        self.subscription = subscription
        self.path = transport.subscription_path(subscription)
        self.on_message = on_message
        self.lifetime = transport.settings.effective_stream_lifetime or DEFAULT_LIFETIME
        self.call_metadata = metadata(f"subscription={self.path}")
        self.client_id = uuid.uuid4().hex
        self.lease = Leaser(self, flow)
        self.heal_after = self.lease.stream_ack_deadline + 5.0
        self.sender = Sender(core.channel, self.path)
        part = share(flow, streams)
        self.pulls = [_Pull(self, i, part) for i in range(streams)]
        self.cancelled = False
        #: Messages whose nack waits for the calls to end (see the module docstring).
        self._held: list[GrpcMessage] = []
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._closing: Any = None
        #: Lease extensions sent (for tests and stats).
        self.extended = 0

    # ----------------------------------------------------------- loop thread
    def start(self) -> None:
        loop = self.loop
        for pull in self.pulls:
            pull.task = loop.create_task(pull.run())
            pull.task.add_done_callback(self._pull_done)
        self.lease.task = loop.create_task(self.lease.run())

    def settle(self, batch: list[Item]) -> None:
        if self._done.is_set():
            # After close(): dropped, as on the pubsub transport (the lease lapses
            # and Pub/Sub delivers the message again).
            logger.debug("%d settlement(s) after %s closed dropped", len(batch), self.path)
            for _, _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(AckError("the stream was closed before the ack"))
            return
        now = time.monotonic()
        acks: list[str] = []
        nacks: list[str] = []
        futures: dict[str, Any] = {}
        touched = set()
        hold = self.cancelled and any(p.open for p in self.pulls)
        add = self.lease.histogram.add
        for kind, message, future in batch:
            if not message.released:
                add(now - message.received_at)
                pull = message._pull
                pull.release(message)
                touched.add(pull)
            if kind == ACK:
                acks.append(message.ack_id)
                if future is not None:
                    futures[message.ack_id] = future
            elif hold:
                self._held.append(message)
            else:
                nacks.append(message.ack_id)
        for pull in touched:
            pull.pump()
        if acks:
            self.sender.ack(acks, futures)
        if nacks:
            self.sender.modack(nacks, 0)

    def hold(self, message: GrpcMessage) -> None:
        """A message that came after ``cancel()``: nacked once the calls end."""
        message.released = True
        message._pull.leased.pop(message.ack_id, None)
        self._held.append(message)

    def _half_close(self) -> None:
        for pull in self.pulls:
            for message in pull.undelivered():
                self.hold(message)
            pull.half_close()
        self._release_held_if_ended()

    def _pull_done(self, task: asyncio.Task[None]) -> None:
        self._release_held_if_ended()

    def _release_held_if_ended(self) -> None:
        if any(p.open for p in self.pulls) or not self._held:
            return
        held, self._held = self._held, []
        self.sender.modack([m.ack_id for m in held], 0)

    def fail(self, error: BaseException, *, callback: bool = False) -> None:
        if self._error is None:
            self._error = error
            if callback:
                logger.error(
                    "the message callback of subscription %s raised; closing the stream",
                    self.subscription, exc_info=error,
                )
            else:
                logger.error("the streaming pull of %s failed: %s", self.path, error)
        self.cancelled = True
        if self._closing is None:
            self._closing = self.loop.create_task(self._close(10.0))

    async def _close(self, timeout: float | None) -> None:
        try:
            started = time.monotonic()
            self.cancelled = True
            self._half_close()
            pulls = [p for p in self.pulls if p.task is not None]
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(p.ended.wait() for p in pulls)),
                    END_WAIT if timeout is None else min(END_WAIT, timeout),
                )
            except asyncio.TimeoutError:
                logger.debug("the server did not end the streaming pulls of %s", self.path)
            for pull in pulls:
                pull.cancel_call()
                if pull.task is not None and not pull.task.done():
                    pull.task.cancel()
            await asyncio.gather(*(p.task for p in pulls if p.task), return_exceptions=True)
            if self.lease.task is not None:
                self.lease.task.cancel()
            for pull in self.pulls:
                pull.open = False
                for message in pull.undelivered():
                    self.hold(message)
            self.settler.flush()  # what handler threads acked or nacked until now
            self._release_held_if_ended()
            left = None if timeout is None else max(0.1, timeout - (time.monotonic() - started))
            await self.sender.drain(left)
        finally:
            self._done.set()

    # --------------------------------------------------------- any thread
    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._half_close)

    def close(self, timeout: float | None = None) -> None:
        if self.loop_thread.in_loop():
            if self._closing is None:
                self.cancelled = True
                self._closing = self.loop.create_task(self._close(timeout))
            return
        if not self._done.is_set():
            try:
                self.loop_thread.run(self._start_close(timeout), timeout=5)
            except Exception:
                logger.debug("closing the stream of %s failed", self.path, exc_info=True)
                self._done.set()
        if not self._done.wait(timeout):
            logger.warning(
                "the stream of subscription %s did not shut down within %s s",
                self.subscription, timeout,
            )

    async def _start_close(self, timeout: float | None) -> None:
        if self._closing is None:
            self.cancelled = True
            self._closing = self.loop.create_task(self._close(timeout))

    def done(self) -> bool:
        return self._done.is_set()

    def exception(self) -> BaseException | None:
        return self._error

    def connected(self) -> bool:
        if self.done():
            return False
        if any(p.retrying for p in self.pulls):
            return False
        return self.transport.channel_ready()

    def failure(self) -> str | None:
        if self.done():
            return None
        for pull in self.pulls:
            text = pull.health.failure()
            if text is not None:
                return text
        return None
