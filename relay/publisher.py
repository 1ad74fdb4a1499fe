"""``Publisher``: validate, encode, run publish hooks, hand bytes to the transport.

``relay.publish(topic, data, **attrs)`` goes through the process-wide publisher
(``relay.get_publisher()``), built from the settings on first use.

Every way of publishing (``publish``, ``apublish``, ``publish_many``,
``apublish_many``) takes the same four steps: ``Outgoing.prepare`` (validate,
encode, ``pre_publish`` hooks; ``relay.outgoing``), admission to the
back-pressure budget, ``_send`` (hand the bytes to the transport; the
post-publish hook fires when its future completes) and, when the caller
waits, ``_outcome``. The async forms differ only in how they wait for room and
for confirmation: they await, on their own event loop, what the sync forms
block on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import CancelledError, Future
from concurrent.futures import wait as wait_futures
from typing import Any

from relay import aio
from relay.batch import BatchPublishError, Item, Published, PublishResults
from relay.budget import Budget, PublisherFull
from relay.errors import ConfigurationError, PublishError
from relay.middleware import MiddlewareChain
from relay.outgoing import Outgoing, Sending
from relay.settings import Settings
from relay.transports.base import Transport

logger = logging.getLogger("relay.publisher")

#: Keyword names ``publish()`` keeps for itself; pass attributes with these
#: names through ``attrs={...}`` instead.
RESERVED_NAMES = frozenset(
    {"topic", "data", "ordering_key", "blocking", "timeout", "attrs", "raise_exception"}
)


class Publisher:
    """Publishes JSON messages through a transport and the middleware chain.

    Keep one per process (``relay.get_publisher()``): each one holds a
    transport with its own connections and batching threads. Its settings and
    transport are fixed for its life (topic names are validated once each).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        settings: Settings | None = None,
        middleware: MiddlewareChain | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.transport = transport
        self.middleware = middleware if middleware is not None else MiddlewareChain()
        self._outgoing = Outgoing(self.settings, transport)
        self._budget = Budget(
            self.settings.publisher_max_messages, self.settings.publisher_max_bytes
        )
        #: How long a publish may wait for room in the budget.
        self._room_wait = (
            self.settings.publisher_retry_timeout
            if self.settings.publisher_limit_behavior == "block"
            else 0.0
        )
        #: Future -> its message, from hand-over until the future's done callback
        #: or a blocking publish's timeout takes it out: whichever pops it (a dict
        #: pop is atomic) fires the post-publish hook.
        self._in_flight: dict[Future[str], Sending] = {}
        #: The one done callback of every future: no object per publish.
        self._settle = self._on_done

    @property
    def outstanding(self) -> tuple[int, int]:
        """Messages and bytes sent but not yet confirmed (or failed)."""
        return self._budget.messages, self._budget.bytes

    def publish(
        self,
        /,
        topic: str,
        data: Any,
        *,
        ordering_key: str = "",
        blocking: bool | None = None,
        timeout: float | None = None,
        attrs: Mapping[str, str] | None = None,
        raise_exception: bool = True,
        **attributes: str,
    ) -> Future[str]:
        """Publish ``data`` (encoded as JSON) to ``topic`` with string ``attributes``.

        Returns a future that resolves to the message id. Non-blocking by default
        (``PUBLISHER_BLOCKING``); with ``blocking=True`` it waits up to ``timeout``
        seconds (``PUBLISHER_TIMEOUT``) and, on any failure, raises
        ``PublishError`` (or, with ``raise_exception=False``, logs and returns the
        failed future). Invalid names or attributes raise ``ConfigurationError``,
        and data JSON cannot carry unchanged (NaN, infinity, integers beyond 64
        bits, non-UTF-8 bytes, unknown types) ``relay.EncodeError`` (a
        ``TypeError``) naming the value's path, before anything is sent and
        before any hook runs.

        ``topic``, ``data``, ``ordering_key``, ``blocking``, ``timeout``, ``attrs``
        and ``raise_exception`` are reserved: pass attributes with those names
        in ``attrs={...}`` (that works for ``blocking``, ``attrs`` and
        ``raise_exception``; attributes named ``topic``, ``data``,
        ``ordering_key``, ``retry``, ``timeout`` or ``self`` cannot be sent
        through google-cloud-pubsub at all, so on ``TRANSPORT="pubsub"`` they
        are rejected up front, see ``Transport.unsendable_attributes``; the
        grpc and memory transports send them). A ``published_at`` attribute
        (epoch seconds, as Relé sets it) is added unless present; it counts
        toward Pub/Sub's 100, so 99 of the caller's own fit beside it.

        Back-pressure: at most ``PUBLISHER_MAX_MESSAGES`` messages and
        ``PUBLISHER_MAX_BYTES`` bytes may await confirmation. At the limit,
        ``PUBLISHER_LIMIT_BEHAVIOR='block'`` waits for room (at most
        ``PUBLISHER_RETRY_TIMEOUT`` seconds) and ``'error'`` does not wait;
        either way a publish that finds no room fires ``post_publish_failure``
        and raises ``PublishError`` (its ``cause`` a ``PublisherFull``), even
        when non-blocking: nothing is queued without bound, nothing is dropped
        silently.
        """
        sending = self._outgoing.prepare(
            self.middleware, topic, data, ordering_key, attrs, attributes
        )
        if not self._budget.acquire(sending.size, self._room_wait):
            full = self._refused(sending)
            self._fail(sending, full, raise_exception)
            rejected: Future[str] = Future()
            rejected.set_exception(full)
            return rejected
        future = self._send(sending)
        if not (self.settings.publisher_blocking if blocking is None else blocking):
            return future
        wait = self.settings.publisher_timeout if timeout is None else timeout
        wait_futures([future], timeout=wait)
        error = self._outcome(sending, future, wait)
        if error is not None:
            self._fail(sending, error, raise_exception)
        return future

    async def apublish(
        self,
        /,
        topic: str,
        data: Any,
        *,
        ordering_key: str = "",
        timeout: float | None = None,
        attrs: Mapping[str, str] | None = None,
        **attributes: str,
    ) -> str:
        """``publish`` for asyncio: returns the message id once Pub/Sub confirmed it.

        The same validation, hooks, encoding and back-pressure as ``publish``;
        waiting for room in the budget and for the confirmation awaits on the
        caller's loop and never blocks it. It always waits (up to ``timeout``
        seconds, ``PUBLISHER_TIMEOUT`` by default) and raises ``PublishError``
        on any failure. Cancelling the caller stops its wait, not the publish
        (whose post-publish hook still fires). ``blocking`` and
        ``raise_exception`` are not options here and, being reserved names, not
        attributes either: pass such attributes in ``attrs={...}``.
        """
        _refuse_sync_options(attributes)
        sending = self._outgoing.prepare(
            self.middleware, topic, data, ordering_key, attrs, attributes
        )
        if not await self._budget.acquire_async(sending.size, self._room_wait):
            self._fail(sending, self._refused(sending), raise_exception=True)
        future = self._send(sending)
        wait = self.settings.publisher_timeout if timeout is None else timeout
        await aio.wait_futures([future], timeout=wait)
        error = self._outcome(sending, future, wait)
        if error is not None:
            self._fail(sending, error, raise_exception=True)
        return future.result()

    def publish_many(
        self,
        /,
        topic: str,
        items: Iterable[Any],
        *,
        timeout: float | None = None,
        raise_exception: bool = True,
    ) -> PublishResults:
        """Publish every item to ``topic``; wait for them all; one result per item.

        An item is the data itself, or a ``relay.Item(data, ordering_key=...,
        attrs=..., **attributes)``. Each item takes ``publish``'s steps on its
        own, so one bad item (or one refusal, or one failure) does not stop the
        others: its result holds the error. Once every item settled (or
        ``timeout`` seconds, ``PUBLISHER_TIMEOUT`` by default, after the last
        was handed over), any failure raises ``BatchPublishError`` (a
        ``PublishError``) whose ``results`` hold every item's outcome; with
        ``raise_exception=False`` the results are returned and the failures
        logged.
        """
        entries = []
        for index, item in enumerate(items):
            entry = self._entry(topic, index, item)
            if entry.sending is not None:
                self._admit(entry, self._budget.acquire(entry.sending.size, self._room_wait))
            entries.append(entry)
        wait = self.settings.publisher_timeout if timeout is None else timeout
        wait_futures([e.future for e in entries if e.future is not None], timeout=wait)
        return self._results(topic, entries, wait, raise_exception)

    async def apublish_many(
        self,
        /,
        topic: str,
        items: Iterable[Any],
        *,
        timeout: float | None = None,
        raise_exception: bool = True,
    ) -> PublishResults:
        """``publish_many`` for asyncio: room and confirmations are awaited on the
        caller's loop, never blocking it."""
        entries = []
        for index, item in enumerate(items):
            entry = self._entry(topic, index, item)
            if entry.sending is not None:
                room = await self._budget.acquire_async(entry.sending.size, self._room_wait)
                self._admit(entry, room)
            entries.append(entry)
        wait = self.settings.publisher_timeout if timeout is None else timeout
        await aio.wait_futures([e.future for e in entries if e.future is not None], wait)
        return self._results(topic, entries, wait, raise_exception)

    # ------------------------------------------------------------------ steps
    def _refused(self, sending: Sending) -> PublisherFull:
        """The budget had no room: fire the failure hook, return the error."""
        budget = self._budget
        full = PublisherFull(
            f"{budget.messages} message(s), {budget.bytes} bytes are waiting "
            f"for Pub/Sub to confirm them (PUBLISHER_MAX_MESSAGES={budget.max_messages}, "
            f"PUBLISHER_MAX_BYTES={budget.max_bytes}, PUBLISHER_LIMIT_BEHAVIOR="
            f"{self.settings.publisher_limit_behavior!r}); Pub/Sub is slow or unreachable, "
            "or the limits are too low for this rate"
        )
        self.middleware.run("post_publish_failure", sending.message, full, sending.elapsed())
        return full

    def _send(self, sending: Sending) -> Future[str]:
        """Hand the message to the transport (its budget share already taken)."""
        message = sending.message
        try:
            future = self.transport.publish(
                message.topic, message.payload, message.attributes,
                ordering_key=message.ordering_key,
            )
        except ConfigurationError as exc:  # bad settings or input: the caller sees it now
            self._budget.release(sending.size)
            self.middleware.run("post_publish_failure", message, exc, sending.elapsed())
            raise
        except Exception as exc:  # a transport that raises instead of failing the future
            future = Future()
            future.set_exception(exc)
        self._in_flight[future] = sending  # before: the callback may run at once
        future.add_done_callback(self._settle)
        return future

    def _outcome(self, sending: Sending, future: Future[str], wait: float) -> BaseException | None:
        """After a wait of ``wait`` seconds: the error, or None if confirmed."""
        if not future.done():
            error = TimeoutError(
                f"publishing to {sending.message.topic!r} did not complete within {wait} s"
            )
            # Taken out of the table, a late confirmation fires no further hook,
            # and only gives its room back.
            if self._in_flight.pop(future, None) is not None:
                future.add_done_callback(_Release(self._budget, sending.size))
                self.middleware.run(
                    "post_publish_failure", sending.message, error, sending.elapsed()
                )
            return error
        if future.cancelled():
            return CancelledError("the publish was cancelled")
        return future.exception()

    def _fail(self, sending: Sending, error: BaseException, raise_exception: bool) -> None:
        topic = sending.message.topic
        if raise_exception:
            raise PublishError(topic, error) from error
        logger.error("publishing to %s failed: %s", topic, error)

    def _on_done(self, future: Future[str]) -> None:
        """Every handed-over future's done callback (on the thread that completed it)."""
        sending = self._in_flight.pop(future, None)
        if sending is None:  # a blocking publish timed out: its failure hook fired
            return
        self._budget.release(sending.size)
        message = sending.message
        exc: BaseException | None
        try:
            exc = future.exception()
        except CancelledError:
            exc = CancelledError("the publish was cancelled")
        if exc is None:
            message.message_id = future.result()
            self.middleware.run("post_publish_success", message, sending.elapsed())
        elif self.middleware.has("post_publish_failure"):
            self.middleware.run("post_publish_failure", message, exc, sending.elapsed())
        else:  # never lose a failure silently, even with no middleware configured
            logger.error("publishing to %s failed: %s: %s", message.topic, type(exc).__name__, exc)

    # ------------------------------------------------------------------ batches
    def _entry(self, topic: str, index: int, item: Any) -> _Entry:
        """Prepare one batch item; bad input becomes that item's error."""
        try:
            if isinstance(item, Item):
                sending = self._outgoing.prepare(
                    self.middleware, topic, item.data, item.ordering_key, item.attrs, {}
                )
            else:
                sending = self._outgoing.prepare(self.middleware, topic, item, "", None, {})
        except Exception as exc:
            return _Entry(index, None, exc)
        return _Entry(index, sending, None)

    def _admit(self, entry: _Entry, room: bool) -> None:
        assert entry.sending is not None
        if not room:
            entry.error = self._refused(entry.sending)
            return
        try:
            entry.future = self._send(entry.sending)
        except ConfigurationError as exc:
            entry.error = exc

    def _results(
        self, topic: str, entries: list[_Entry], wait: float, raise_exception: bool
    ) -> PublishResults:
        results = []
        for entry in entries:
            error, message_id = entry.error, None
            if entry.future is not None and entry.sending is not None:
                error = self._outcome(entry.sending, entry.future, wait)
                if error is None:
                    message_id = entry.future.result()
            results.append(Published(entry.index, message_id, error))
        outcome = PublishResults(results)
        if outcome.ok:
            return outcome
        failure = BatchPublishError(self.settings.topic_prefix + topic, outcome)
        if raise_exception:
            raise failure
        logger.error("%s", failure)
        return outcome

    def close(self) -> None:
        self.transport.close()


class _Release:
    """Gives a message's room back once its future completes (after a timeout
    fired its failure hook); holds the size, not the message."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: Budget, size: int) -> None:
        self.budget = budget
        self.size = size

    def __call__(self, future: Future[str]) -> None:
        self.budget.release(self.size)


class _Entry:
    """One item of a batch: prepared (``sending``), handed over (``future``) or failed."""

    __slots__ = ("error", "future", "index", "sending")

    def __init__(self, index: int, sending: Sending | None, error: BaseException | None) -> None:
        self.index = index
        self.sending = sending
        self.error = error
        self.future: Future[str] | None = None


def _refuse_sync_options(attributes: Mapping[str, str]) -> None:
    """``apublish`` has no ``blocking``/``raise_exception``; they stay reserved names."""
    misplaced = sorted(RESERVED_NAMES.intersection(attributes))
    if misplaced:
        raise ConfigurationError(
            f"apublish() always waits for the confirmation and raises PublishError: "
            f"{', '.join(misplaced)} is not one of its options, and a reserved name is "
            f"not an attribute either; to send an attribute named so, pass "
            f"attrs={{{misplaced[0]!r}: ...}}"
        )
