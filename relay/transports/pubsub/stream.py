"""The streaming pull: google's dispatcher thread, relay's callback, settle-once messages."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from google.cloud.pubsub_v1.subscriber.scheduler import Scheduler

from relay.transports.base import MessageCallback, ReceivedMessage, Stream
from relay.transports.pubsub.calls import PullCalls

logger = logging.getLogger("relay.transports.pubsub")

#: Seconds ``close()`` waits for the server to end a half-closed streaming pull
#: before google cancels it (the emulator ends it within milliseconds).
END_WAIT = 2.0


class InlineScheduler(Scheduler):  # type: ignore[misc]
    """Runs google's message callback on the thread that dispatches it.

    relay's callback only submits the message to the Worker's executor, so there
    is no point in a thread pool per subscription (google's default). One
    scheduler per stream: its ``queue`` carries that stream's acks and nacks to
    google's dispatcher thread.

    google's shutdown calls ``shutdown()`` once the streaming pull has stopped
    receiving, then nacks the messages it returns before it stops the
    dispatcher, which sends those nacks: ``on_shutdown`` supplies them (the
    stream's held nacks).
    """

    def __init__(self, on_shutdown: Callable[[], list[Any]] | None = None) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._on_shutdown = on_shutdown

    @property
    def queue(self) -> queue.Queue[Any]:
        return self._queue

    def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        callback(*args, **kwargs)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
        # Nothing is ever queued here and no thread is owned: the executor the
        # callbacks feed belongs to the Worker, which shuts it down itself.
        return self._on_shutdown() if self._on_shutdown is not None else []


class PubSubMessage(ReceivedMessage):
    """A google ``Message`` seen through relay's ``ReceivedMessage``; settles once."""

    __slots__ = (
        "_message",
        "_settled",
        "_stream",
        "attributes",
        "data",
        "delivery_attempt",
        "message_id",
        "ordering_key",
        "publish_time",
    )

    #: One lock for every message's settle-once check: held for a flag flip only.
    _settle_lock = threading.Lock()

    def __init__(self, message: Any, stream: PubSubStream) -> None:
        self._message = message
        self._stream = stream
        self._settled = False
        self.data = message.data
        # The protobuf map itself (read-only use), not a copy.
        self.attributes = message.attributes
        self.message_id = message.message_id
        self.publish_time = message.publish_time
        # None unless the subscription has a dead-letter policy.
        self.delivery_attempt = message.delivery_attempt
        self.ordering_key = message.ordering_key

    def _claim(self) -> bool:
        with self._settle_lock:
            if self._settled:
                return False
            self._settled = True
            return True

    def ack(self) -> None:
        if self._claim():
            self._message.ack()

    def nack(self) -> None:
        if self._claim():
            self._stream._nack(self._message)

    def ack_with_response(self) -> Future[None]:
        if not self._claim():
            done: Future[None] = Future()
            done.set_result(None)
            return done
        # Resolves once Pub/Sub confirmed the ack (exactly-once subscriptions);
        # fails with google's AcknowledgeError if it was not applied.
        future: Future[None] = self._message.ack_with_response()
        return future

    def __repr__(self) -> str:
        return f"<PubSubMessage id={self.message_id}>"


class _Connectivity:
    """Follows the subscriber channel's gRPC state: is Pub/Sub reachable right now?

    google's streaming pull reconnects by itself after a network failure, so the
    stream's future does not end; the channel's state is what shows the outage.
    """

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self.state: Any = None
        try:
            channel.subscribe(self._changed, try_to_connect=True)
        except Exception:  # a channel that cannot report: treat as always connected
            logger.debug("the subscriber channel cannot report its state", exc_info=True)
            self._channel = None

    def _changed(self, state: Any) -> None:
        self.state = state

    @property
    def ready(self) -> bool:
        import grpc

        return self._channel is None or self.state is grpc.ChannelConnectivity.READY

    def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                self._channel.unsubscribe(self._changed)


class PubSubStream(Stream):
    """One streaming pull. See ``Stream`` for the contract.

    Closing it first half-closes the streaming pull and waits (up to
    ``END_WAIT``) for the server to end it, then lets google shut down, which
    sends the last acks and nacks. Nacks issued after ``cancel()`` are held
    until then. Both for the same reason: a nack makes Pub/Sub hand the message
    out again at once, to a stream it still serves, and the emulator keeps
    serving a stream that google merely cancelled (until the stream's deadline;
    measured: a message nacked after google's shutdown came back to the next
    consumer only after 60 s and more, a full lease on the dead stream, while
    one nacked after a half-close came back at once). Drain nacks so came back
    a minute late. A held message stays leased (google keeps extending it).
    """

    def __init__(
        self,
        subscription: str,
        on_message: MessageCallback,
        connectivity: _Connectivity | None = None,
        *,
        heal_after: float = 65.0,
    ) -> None:
        self.subscription = subscription
        #: Its streaming-pull calls; google's client hands them over (``_SubscriberClient``).
        self.calls = PullCalls(heal_after)
        self._connectivity = connectivity
        self._on_message = on_message
        self._cancelled = False
        self._error: BaseException | None = None
        self._future: Any = None
        self._close_lock = threading.Lock()
        self._closing = False
        #: google messages whose nack waits for the streaming pull to stop; None
        #: once google has taken them (later nacks go straight to google).
        self._held: list[Any] | None = []
        self._held_lock = threading.Lock()
        #: Give this to google's ``subscribe()``: its shutdown releases the held nacks.
        self.scheduler = InlineScheduler(self._release_held)

    def _nack(self, message: Any) -> None:
        """Nack a google message now, or hold it until the stream stops (see above)."""
        with self._held_lock:
            if self._cancelled and self._held is not None:
                self._held.append(message)
                return
        message.nack()

    def _release_held(self) -> list[Any]:
        """For google's shutdown, after the stream stopped receiving: the nacks to send."""
        with self._held_lock:
            held, self._held = self._held or [], None
        return held

    def _deliver(self, message: Any) -> None:
        """google's callback, run inline by ``InlineScheduler``; must not block."""
        if self._cancelled:
            # Not ours any more: hand it back once the stream has stopped.
            self._nack(message)
            return
        self.calls.delivered()
        received = PubSubMessage(message, self)
        try:
            self._on_message(received)
        except BaseException as exc:  # a callback bug ends the stream, visibly
            self._cancelled = True
            received.nack()
            if self._error is None:
                self._error = exc
                logger.error(
                    "the message callback of subscription %s raised; closing the stream",
                    self.subscription, exc_info=True,
                )
            if self._future is not None:
                self._future.cancel()  # non-blocking: google shuts down on its own thread

    def cancel(self) -> None:
        with self._held_lock:
            self._cancelled = True

    def close(self, timeout: float | None = None) -> None:
        self.cancel()
        future = self._future
        if future is None:
            return
        with self._close_lock:
            first, self._closing = not self._closing, True
        if first:
            # Until the server has ended it, it would take back what is nacked now.
            wait = END_WAIT if timeout is None else min(END_WAIT, timeout)
            if not self.calls.end(wait):
                logger.debug("the server did not end the streaming pull of %s", self.subscription)
            future.cancel()
        try:
            # Resolves once google's shutdown has flushed the ack queue.
            future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            logger.warning(
                "the stream of subscription %s did not shut down within %s s",
                self.subscription, timeout,
            )
        except Exception:
            pass  # the stream failed; exception() reports why

    def done(self) -> bool:
        return self._future is not None and bool(self._future.done())

    def connected(self) -> bool:
        if self.done():
            return False
        return self._connectivity is None or self._connectivity.ready

    def failure(self) -> str | None:
        if self.done():
            return None
        return self.calls.failure()

    def exception(self) -> BaseException | None:
        if self._error is not None:
            return self._error
        if self._closing or not self.done():
            return None  # closed by relay: google's future reports how the call ended
        try:
            error: BaseException | None = self._future.exception(timeout=0)
        except BaseException as exc:  # pragma: no cover - google never cancels the state
            return exc
        return error
