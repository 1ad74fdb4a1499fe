"""``Publisher``: validate, encode, run publish hooks, hand bytes to the transport.

``relay.publish(topic, data, **attrs)`` goes through the process-wide publisher
(``relay.get_publisher()``), built from the settings on first use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from types import MappingProxyType
from typing import Any

from relay.codec import Codec
from relay.errors import ConfigurationError, PublishError
from relay.limits import (
    MAX_ATTRIBUTES,
    NOBODY,
    validate_attributes,
    validate_name,
    validate_payload,
)
from relay.message import OutgoingMessage
from relay.middleware import MiddlewareChain
from relay.settings import Settings
from relay.transports.base import Transport

logger = logging.getLogger("relay.publisher")

#: Keyword names ``publish()`` keeps for itself; pass attributes with these
#: names through ``attrs={...}`` instead.
RESERVED_NAMES = frozenset(
    {"topic", "data", "ordering_key", "blocking", "timeout", "attrs", "raise_exception"}
)


class _Settled:
    """Makes sure exactly one of the post-publish hooks fires per message."""

    __slots__ = ("_lock", "done")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = False

    def claim(self) -> bool:
        with self._lock:
            if self.done:
                return False
            self.done = True
            return True


class _Budget:
    """Publisher back-pressure: bounds messages and bytes sent but not yet confirmed.

    Without it a burst to a slow or unreachable Pub/Sub would pile up in the
    client's batches until memory ran out.
    """

    __slots__ = ("_cond", "bytes", "max_bytes", "max_messages", "messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._cond = threading.Condition()
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0

    def _full(self, size: int) -> bool:
        if self.messages >= self.max_messages:
            return True
        # One message bigger than the whole byte budget still goes, alone.
        return self.messages > 0 and self.bytes + size > self.max_bytes

    def acquire(self, size: int, wait: float) -> bool:
        """Take room for one message of ``size`` bytes, waiting up to ``wait`` seconds."""
        with self._cond:
            if self._full(size):
                deadline = time.monotonic() + wait
                while self._full(size):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            self.messages += 1
            self.bytes += size
            return True

    def release(self, size: int) -> None:
        with self._cond:
            self.messages -= 1
            self.bytes -= size
            self._cond.notify()


#: Who set an attribute the caller did not: ``validate_attributes`` counts them apart.
_ADDED_BY_RELAY: Mapping[str, str] = MappingProxyType({"published_at": "relay"})


def _who_added(
    final: Mapping[str, str], attrs: Mapping[str, str] | None, attributes: Mapping[str, str]
) -> dict[str, str]:
    """The attributes publish()'s caller did not pass, and who added them."""
    own = set(attrs or ()).union(attributes)
    return {
        name: "relay" if name == "published_at" else "pre_publish middleware"
        for name in final
        if name not in own
    }


class PublisherFull(BufferError):
    """The publisher's back-pressure limit was reached (``PUBLISHER_MAX_MESSAGES``/``_BYTES``)."""


class Publisher:
    """Publishes JSON messages through a transport and the middleware chain.

    Keep one per process (``relay.get_publisher()``): each one holds a
    transport with its own connections and batching threads.
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
        self._codec = Codec(self.settings.encoder)
        self._budget = _Budget(
            self.settings.publisher_max_messages, self.settings.publisher_max_bytes
        )

    @property
    def outstanding(self) -> tuple[int, int]:
        """Messages and bytes sent but not yet confirmed (or failed)."""
        return self._budget.messages, self._budget.bytes

    def publish(
        self,
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
        through google-cloud-pubsub at all and are rejected up front, see
        ``relay.limits.UNSENDABLE_ATTRIBUTES``). A ``published_at`` attribute
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
        settings = self.settings
        full_topic = validate_name(settings.topic_prefix + topic, "topic")
        merged: dict[str, str] = dict(attrs) if attrs else {}
        if attributes:
            merged.update(attributes)
        added = NOBODY
        if "published_at" not in merged:
            merged["published_at"] = str(time.time())
            added = _ADDED_BY_RELAY
        validate_attributes(merged, added=added)
        if ordering_key and not isinstance(ordering_key, str):
            raise ConfigurationError(f"ordering_key must be a string, got {ordering_key!r}")
        payload = self._codec.encode(data)
        validate_payload(full_topic, payload)

        message = OutgoingMessage(full_topic, data, merged, ordering_key, payload)
        chain = self.middleware
        started = time.perf_counter()
        if chain.has("pre_publish"):
            chain.run("pre_publish", message)
            final = message.attributes
            if len(final) > MAX_ATTRIBUTES:  # only the error for too many needs who added what
                added = _who_added(final, attrs, attributes)
            try:
                validate_attributes(final, added=added)  # what middleware added counts too
            except ConfigurationError as exc:
                # pre_publish ran, so its post hook must too (a span must end).
                chain.run("post_publish_failure", message, exc, time.perf_counter() - started)
                raise

        size = len(message.payload)
        behaviour = settings.publisher_limit_behavior
        wait = settings.publisher_retry_timeout if behaviour == "block" else 0.0
        if not self._budget.acquire(size, wait):
            full = PublisherFull(
                f"{self._budget.messages} message(s), {self._budget.bytes} bytes are waiting "
                f"for Pub/Sub to confirm them (PUBLISHER_MAX_MESSAGES="
                f"{self._budget.max_messages}, PUBLISHER_MAX_BYTES={self._budget.max_bytes}, "
                f"PUBLISHER_LIMIT_BEHAVIOR={behaviour!r}); Pub/Sub is slow or unreachable, or "
                "the limits are too low for this rate"
            )
            chain.run("post_publish_failure", message, full, time.perf_counter() - started)
            if raise_exception:
                raise PublishError(full_topic, full) from full
            logger.error("publishing to %s failed: %s", full_topic, full)
            rejected: Future[str] = Future()
            rejected.set_exception(full)
            return rejected
        settled = _Settled()
        try:
            future = self._send(message)
        except BaseException as exc:
            self._budget.release(size)
            chain.run("post_publish_failure", message, exc, time.perf_counter() - started)
            raise
        future.add_done_callback(lambda f: self._on_done(f, message, started, settled, size))

        if blocking is None:
            blocking = settings.publisher_blocking
        if not blocking:
            return future
        wait = settings.publisher_timeout if timeout is None else timeout
        try:
            future.result(timeout=wait)
        except Exception as exc:
            error: BaseException = exc
            if isinstance(exc, FutureTimeoutError):
                error = TimeoutError(
                    f"publishing to {full_topic!r} did not complete within {wait} s"
                )
                if settled.claim():
                    chain.run(
                        "post_publish_failure", message, error, time.perf_counter() - started
                    )
            if raise_exception:
                raise PublishError(full_topic, error) from error
            logger.error("publishing to %s failed: %s", full_topic, error)
        return future

    def _send(self, message: OutgoingMessage) -> Future[str]:
        try:
            return self.transport.publish(
                message.topic, message.payload, message.attributes,
                ordering_key=message.ordering_key,
            )
        except ConfigurationError:
            raise  # bad settings or input: the caller must see it now, not in a future
        except Exception as exc:  # a transport that raises instead of failing the future
            failed: Future[str] = Future()
            failed.set_exception(exc)
            return failed

    def _on_done(
        self,
        future: Future[str],
        message: OutgoingMessage,
        started: float,
        settled: _Settled,
        size: int,
    ) -> None:
        self._budget.release(size)
        if not settled.claim():
            return
        elapsed = time.perf_counter() - started
        exc: BaseException | None
        if future.cancelled():
            exc = CancelledError("the publish was cancelled")
        else:
            exc = future.exception()
        if exc is None:
            message.message_id = future.result()
            self.middleware.run("post_publish_success", message, elapsed)
        elif self.middleware.has("post_publish_failure"):
            self.middleware.run("post_publish_failure", message, exc, elapsed)
        else:  # never lose a failure silently, even with no middleware configured
            logger.error("publishing to %s failed: %s: %s", message.topic, type(exc).__name__, exc)

    def close(self) -> None:
        self.transport.close()
