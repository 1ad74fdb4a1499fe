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

logger = logging.getLogger("relay.transports.pubsub")


class InlineScheduler(Scheduler):  # type: ignore[misc]
    """Runs google's message callback on the thread that dispatches it.

    relay's callback only submits the message to the Worker's executor, so there
    is no point in a thread pool per subscription (google's default). One
    scheduler per stream: its ``queue`` carries that stream's acks and nacks to
    google's dispatcher thread.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    @property
    def queue(self) -> queue.Queue[Any]:
        return self._queue

    def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        callback(*args, **kwargs)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
        # Nothing is ever queued here and nothing is owned: the executor the
        # callbacks feed belongs to the Worker, which shuts it down itself.
        return []


class PubSubMessage(ReceivedMessage):
    """A google ``Message`` seen through relay's ``ReceivedMessage``; settles once."""

    __slots__ = (
        "_message",
        "_settled",
        "attributes",
        "data",
        "delivery_attempt",
        "message_id",
        "ordering_key",
        "publish_time",
    )

    #: One lock for every message's settle-once check: held for a flag flip only.
    _settle_lock = threading.Lock()

    def __init__(self, message: Any) -> None:
        self._message = message
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
            self._message.nack()

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
    """One streaming pull. See ``Stream`` for the contract."""

    def __init__(
        self,
        subscription: str,
        on_message: MessageCallback,
        connectivity: _Connectivity | None = None,
    ) -> None:
        self.subscription = subscription
        self._connectivity = connectivity
        self._on_message = on_message
        self._cancelled = False
        self._error: BaseException | None = None
        self._future: Any = None
        self._close_lock = threading.Lock()
        self._closing = False

    def _deliver(self, message: Any) -> None:
        """google's callback, run inline by ``InlineScheduler``; must not block."""
        if self._cancelled:
            # Not ours any more: hand it straight back so it is redelivered soon.
            message.nack()
            return
        received = PubSubMessage(message)
        try:
            self._on_message(received)
        except BaseException as exc:  # a callback bug ends the stream, visibly
            received.nack()
            if self._error is None:
                self._error = exc
                logger.error(
                    "the message callback of subscription %s raised; closing the stream",
                    self.subscription, exc_info=True,
                )
            self._cancelled = True
            if self._future is not None:
                self._future.cancel()  # non-blocking: google shuts down on its own thread

    def cancel(self) -> None:
        self._cancelled = True

    def close(self, timeout: float | None = None) -> None:
        self._cancelled = True
        future = self._future
        if future is None:
            return
        with self._close_lock:
            if not self._closing:
                self._closing = True
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

    def exception(self) -> BaseException | None:
        if self._error is not None:
            return self._error
        if not self.done():
            return None
        try:
            error: BaseException | None = self._future.exception(timeout=0)
        except BaseException as exc:  # pragma: no cover - google never cancels the state
            return exc
        return error
