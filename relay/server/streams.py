"""Pull and StreamingPull: handing leased messages to clients.

A streaming pull is served by two threads: gRPC's, which waits on the
subscription's condition and writes batches (a response holds as many ready
messages as the client's flow control allows, up to ``MAX_BATCH`` and
``MAX_RESPONSE_BYTES``), and a reader, which applies the acks, modacks and
deadline changes the client sends on the stream. The stream ends when the
client half-closes it, when its connection goes (gRPC's callback), when the
subscription is deleted or when the server stops. Messages it held stay
leased until their deadlines: google's client acks over unary calls and keeps
acking what an earlier stream delivered after reopening one, so a lease
outlives its stream, as on Pub/Sub. A unary Pull's response has the same caps,
whatever its ``max_messages`` (Pub/Sub too may return fewer than asked).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.pubsub_v1 import types as gtypes

from relay.server import names, wire
from relay.server.queue import Holder, Queue
from relay.server.state import Broker

StreamingPullRequest = gtypes.StreamingPullRequest.pb()

MAX_BATCH = names.MAX_RESPONSE_MESSAGES
#: Below the 4 MiB a bare gRPC channel (google's client on an emulator) accepts.
MAX_RESPONSE_BYTES = 3 * 1024 * 1024
#: How often a waiting stream looks at its connection, in seconds.
WAKE = 0.5
#: The longest a unary Pull waits for a message before answering empty.
PULL_WAIT = 5.0


def _abort(context: Any, error: names.ServiceError) -> None:
    context.abort(error.code, error.message)


class Settle:
    """Acks and modacks, shared by the unary calls and the stream's requests."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def ack(self, queue: Queue, ack_ids: list[str]) -> list[str]:
        return queue.ack(ack_ids)

    def modify(self, queue: Queue, ack_ids: list[str], seconds: int) -> list[str]:
        if not 0 <= seconds <= names.MAX_ACK_DEADLINE:
            raise names.invalid(
                f"Invalid ack_deadline_seconds: {seconds} (it must be between 0 and "
                f"{names.MAX_ACK_DEADLINE} seconds)."
            )
        unknown, dead = queue.modify(ack_ids, seconds)
        if dead:
            self.broker.dead_letter(queue, dead)
        return unknown


def pull(broker: Broker, request: Any, context: Any) -> bytes:
    queue = broker.queue(request.subscription)
    if request.max_messages <= 0:
        raise names.invalid("max_messages must be positive.")
    remaining = context.time_remaining()
    wait = 0.0 if request.return_immediately else min(
        PULL_WAIT, max(0.0, (remaining if remaining is not None else PULL_WAIT) - 0.5)
    )
    with queue.cond:
        deadline = queue.clock() + wait
        while True:
            if queue.deleted:
                raise names.not_found(request.subscription.rsplit("/", 1)[-1])
            if queue.stopped:
                raise names.ServiceError(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
            config = queue.config
            if config.push:
                raise names.push_subscription()
            leases = queue.take_locked(
                None, min(request.max_messages, MAX_BATCH), MAX_RESPONSE_BYTES,
                config.ack_deadline,
            )
            left = deadline - queue.clock()
            if leases or left <= 0 or not context.is_active():
                break
            queue.cond.wait(min(left, WAKE))
    return wire.received_messages(leases, bool(config.dead_letter_topic))


class StreamingPull:
    """One StreamingPull call."""

    def __init__(self, broker: Broker, settle: Settle, requests: Iterator[Any], context: Any
                 ) -> None:
        self.broker = broker
        self.settle = settle
        self.requests = requests
        self.context = context
        self.open = True
        self.queue: Queue | None = None
        self.error: names.ServiceError | None = None

    def serve(self) -> Iterator[bytes]:
        try:
            first = next(self.requests)
        except StopIteration:
            return
        try:
            queue = self.broker.queue(first.subscription)
            names.check_ack_deadline(
                first.stream_ack_deadline_seconds, "stream_ack_deadline_seconds"
            )
            self._apply(queue, first)
        except names.ServiceError as exc:
            _abort(self.context, exc)
            return
        self.queue = queue
        self.ack_deadline = first.stream_ack_deadline_seconds
        holder = Holder(max(0, first.max_outstanding_messages), max(0, first.max_outstanding_bytes))
        self.context.add_callback(self._close)
        threading.Thread(
            target=self._read, args=(queue,), name="relay-server-stream-reader", daemon=True
        ).start()
        try:
            yield from self._deliver(queue, holder)
        finally:
            self._close()

    def _deliver(self, queue: Queue, holder: Holder) -> Iterator[bytes]:
        context = self.context
        while True:
            with queue.cond:
                while True:
                    if queue.deleted:
                        _abort(context, names.not_found(queue.config.name.rsplit("/", 1)[-1]))
                    if queue.stopped:
                        context.abort(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
                    if self.error is not None:
                        _abort(context, self.error)
                    if queue.config.push:
                        _abort(context, names.push_subscription())
                    if not self.open or not context.is_active():
                        return
                    leases = queue.take_locked(
                        holder, MAX_BATCH, MAX_RESPONSE_BYTES, self.ack_deadline
                    )
                    if leases:
                        config = queue.config
                        break
                    queue.cond.wait(WAKE)
            yield wire.received_messages(
                leases, bool(config.dead_letter_topic)
            ) + wire.subscription_properties(config.exactly_once, config.ordering)

    def _read(self, queue: Queue) -> None:
        try:
            for request in self.requests:
                if request.stream_ack_deadline_seconds:
                    names.check_ack_deadline(
                        request.stream_ack_deadline_seconds, "stream_ack_deadline_seconds"
                    )
                    self.ack_deadline = request.stream_ack_deadline_seconds
                self._apply(queue, request)
        except names.ServiceError as exc:
            self.error = exc
        except Exception:  # the call broke (cancelled, connection gone)
            pass
        self._close()

    def _apply(self, queue: Queue, request: Any) -> None:
        if request.ack_ids:
            self.settle.ack(queue, list(request.ack_ids))
        if len(request.modify_deadline_ack_ids) != len(request.modify_deadline_seconds):
            raise names.invalid(
                "modify_deadline_ack_ids and modify_deadline_seconds must have the same length."
            )
        by_seconds: dict[int, list[str]] = {}
        pairs = zip(request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=True)
        for ack_id, seconds in pairs:
            by_seconds.setdefault(seconds, []).append(ack_id)
        for seconds, ack_ids in by_seconds.items():
            self.settle.modify(queue, ack_ids, seconds)

    def _close(self) -> None:
        if not self.open:
            return
        self.open = False
        queue = self.queue
        if queue is not None:
            with queue.cond:
                queue.cond.notify_all()


def streaming_pull(broker: Broker, settle: Settle) -> Callable[[Iterator[Any], Any],
                                                              Iterator[bytes]]:
    def handler(requests: Iterator[Any], context: Any) -> Iterator[bytes]:
        return StreamingPull(broker, settle, requests, context).serve()

    return handler
