"""``PubSubReplies``: task results over Pub/Sub, with nothing else to run.

Worker side: each outcome is published to ``RESULTS_TOPIC`` with the
attributes ``relay_reply_to`` (the caller's address, copied from the task
message), ``relay_task_id`` and ``relay_result`` (the record version).

Caller side: on first use (the first ``.delay()`` of a task that keeps its
result) the process creates ``RESULTS_TOPIC`` if it is missing and a reply
subscription of its own on it, ``<RESULTS_TOPIC>-reply-<16 hex>``, which

* has the filter ``attributes.relay_reply_to = "<its address>"``, so Pub/Sub
  hands it only this process's outcomes (the emulator ignores filters: there
  every caller sees every outcome and drops the others');
* expires after ``REPLY_EXPIRATION`` (one day, Pub/Sub's minimum) without a
  subscriber, and keeps unread messages ``REPLY_RETENTION`` (ten minutes, the
  minimum), so a process that dies leaves nothing behind for long;
* is deleted by ``close()`` (``relay.reset()``, ``App.close()``, interpreter exit).

Every reply is acked. One for a task no handle in this process holds any
more (or an unreadable one) is dropped with a DEBUG (or ERROR) line: nothing
is redelivered for ever.

Permissions: workers need ``pubsub.topics.publish`` on ``RESULTS_TOPIC``;
callers need to create, consume and delete subscriptions (and the topic once),
e.g. ``roles/pubsub.editor``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from collections import Counter
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING

from relay.codec import Codec
from relay.errors import DecodeError
from relay.limits import validate_name
from relay.results import RecordsInProcess, TaskRecord
from relay.transports.base import (
    FlowControl,
    ReceivedMessage,
    Stream,
    SubscriptionSpec,
    Transport,
)

if TYPE_CHECKING:
    from relay.settings import Settings

logger = logging.getLogger("relay.results")

#: Seconds without a subscriber before Pub/Sub deletes a reply subscription.
REPLY_EXPIRATION = 24 * 3600.0
#: Seconds Pub/Sub keeps an unread reply.
REPLY_RETENTION = 600.0
ATTR_REPLY_TO = "relay_reply_to"
ATTR_TASK_ID = "relay_task_id"
ATTR_RESULT = "relay_result"


class PubSubReplies(RecordsInProcess):
    """See the module docstring. ``transport``: the one to use (default: built
    from the settings, and closed with this backend)."""

    def __init__(self, settings: Settings, *, transport: Transport | None = None) -> None:
        self.settings = settings
        self.topic = validate_name(settings.topic_prefix + settings.results_topic, "RESULTS_TOPIC")
        self._transport = transport
        self._owns_transport = transport is None
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._records = {}
        self._watchers: Counter[str] = Counter()
        self._pending: set[Future[str]] = set()
        self.address: str | None = None
        self.subscription: str | None = None
        self._stream: Stream | None = None
        self._closed = False

    @property
    def transport(self) -> Transport:
        with self._lock:
            if self._transport is None:
                from relay.app import build_transport

                self._transport = build_transport(self.settings)
            return self._transport

    def use_transport(self, transport: Transport) -> None:
        """Use ``transport`` (not closed by this backend) instead of building one."""
        with self._lock:
            self._transport, self._owns_transport = transport, False

    # ------------------------------------------------------------ worker side
    def store(self, record: TaskRecord, payload: bytes, reply_to: str | None) -> None:
        if not reply_to:
            return  # nobody asked for it (a task sent by gcloud, or ignore_result)
        attributes = {ATTR_REPLY_TO: reply_to, ATTR_TASK_ID: record.id, ATTR_RESULT: "1"}
        future = self.transport.publish(self.topic, payload, attributes)
        with self._lock:
            self._pending.add(future)

        def sent(done: Future[str]) -> None:
            with self._lock:
                self._pending.discard(done)
            error = done.exception()
            if error is not None:
                logger.error(
                    "the %s outcome of task %s (%s) could not be published to %s: %s: %s",
                    record.status.value, record.task, record.id, self.topic,
                    type(error).__name__, error,
                )

        future.add_done_callback(sent)

    def flush(self, timeout: float) -> None:
        with self._lock:
            pending = list(self._pending)
        if pending:
            _, late = wait(pending, timeout)
            if late:
                logger.warning("%d task outcome(s) still unconfirmed after %.0f s",
                               len(late), timeout)

    # ------------------------------------------------------------ caller side
    def watch(self, task_id: str) -> str:
        address = self._listen()
        with self._cond:
            self._watchers[task_id] += 1
            self._records.setdefault(task_id, None)
        return address

    def unwatch(self, task_id: str) -> None:
        with self._cond:
            self._watchers[task_id] -= 1
            if self._watchers[task_id] <= 0:
                del self._watchers[task_id]
                self._records.pop(task_id, None)

    def _listen(self) -> str:
        """Create the reply subscription and open its stream, once (again if it died)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the results backend is closed")
            if self.address is not None and self._stream is not None and not self._stream.done():
                return self.address
        transport = self.transport
        with self._lock:
            if self.address is not None and self._stream is not None and not self._stream.done():
                return self.address
            if self.address is None:
                self.address = uuid.uuid4().hex[:16]
                self.subscription = f"{self.topic}-reply-{self.address}"
                atexit.register(self.close)
            assert self.subscription is not None
            transport.ensure_topic(self.topic)
            transport.create_subscription(SubscriptionSpec(
                name=self.subscription, topic=self.topic, ack_deadline=10,
                filter=f'attributes.{ATTR_REPLY_TO} = "{self.address}"',
                expiration_ttl=REPLY_EXPIRATION, message_retention=REPLY_RETENTION,
            ))
            self._stream = transport.subscribe(
                self.subscription, self._on_reply, FlowControl(max_messages=1000)
            )
            logger.info("task results arrive on subscription %s", self.subscription)
            return self.address

    def _on_reply(self, received: ReceivedMessage) -> None:
        # On the transport's thread: quick, and always acked.
        try:
            self._take(received)
        finally:
            received.ack()

    def _take(self, received: ReceivedMessage) -> None:
        attributes = received.attributes
        if attributes.get(ATTR_REPLY_TO) != self.address:
            return  # another caller's (the emulator does not apply filters)
        try:
            record = TaskRecord.from_data(Codec.decode(received.data))
        except (DecodeError, ValueError) as exc:
            logger.error(
                "reply %s on %s is not a task record and was dropped: %s",
                received.message_id, self.subscription, exc,
            )
            return
        with self._cond:
            if record.id not in self._records:
                logger.debug("outcome of task %s dropped: no handle holds it", record.id)
                return
            if record.supersedes(self._records[record.id]):
                self._records[record.id] = record
                self._cond.notify_all()

    def close(self) -> None:
        """Delete the reply subscription and close the transport if it is ours."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            stream, name, transport = self._stream, self.subscription, self._transport
        atexit.unregister(self.close)
        if stream is not None:
            stream.close(timeout=5)  # sends the last acks
        if name is not None and transport is not None:
            try:
                transport.delete_subscription(name)
            except Exception as exc:
                logger.warning(
                    "could not delete reply subscription %s (%s); Pub/Sub deletes it after "
                    "a day unused", name, exc,
                )
        self.flush(5.0)
        if transport is not None and self._owns_transport:
            transport.close()
