"""The transport seam: the whole surface relay needs from a message broker.

The Publisher and the Worker talk to a ``Transport`` and to nothing else. A
transport deals in short resource names (``"orders"``, not
``"projects/p/topics/orders"``) and raw bytes; encoding, validation, middleware,
prefixes and the ack policy all live above it, so a transport can be replaced
(the in-memory one in tests, a leaner gRPC one later) without touching them.

Contract every transport honours (``tests/transports/test_contract.py`` runs the
same checks against the memory transport and the Pub/Sub emulator):

* ``publish`` never blocks on the network; it returns a future resolved with the
  server-assigned message id, or with the exception that made it fail. Only a
  configuration problem (say, credentials that cannot be loaded) is raised by
  ``publish`` itself, as ``ConfigurationError``.
* ``subscribe`` starts delivering in the background and returns at once. The
  ``on_message`` callback is invoked on a transport thread and must return
  quickly: the Worker hands the message to its own executor. Each message is
  settled exactly once by calling ``ack()`` or ``nack()``; calls after the first
  are ignored. Until it is settled the transport keeps extending its lease.
* Flow control bounds what is outstanding (delivered and not yet settled) per
  stream.
* ``Stream.cancel()`` stops delivering new messages but keeps acks and nacks of
  messages already delivered working, so the Worker can drain; ``Stream.close()``
  then flushes pending acks and releases the stream. A transport may hold the
  nacks issued after ``cancel()`` until ``close()`` has stopped the stream from
  receiving, so that the broker does not hand the messages back to it.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.subscription import RetryPolicy


class ReceivedMessage(abc.ABC):
    """A message as a transport hands it over: raw bytes and metadata."""

    __slots__ = ()

    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: datetime | None
    delivery_attempt: int | None
    ordering_key: str

    @abc.abstractmethod
    def ack(self) -> None:
        """Tell the broker the message is done with; it will not be redelivered."""

    @abc.abstractmethod
    def nack(self) -> None:
        """Tell the broker to redeliver the message (after the retry policy's backoff)."""

    def ack_with_response(self) -> Future[None]:
        """Ack and learn whether the broker applied it (exactly-once delivery).

        The future fails if the ack was not applied (the message will come
        again). Transports that cannot tell resolve it at once.
        """
        future: Future[None] = Future()
        try:
            self.ack()
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)
        return future


@dataclass(frozen=True)
class FlowControl:
    """Bounds on what one stream holds outstanding (delivered, not yet settled)."""

    max_messages: int = 100
    max_bytes: int = 100 * 1024 * 1024
    max_lease_duration: float = 3600.0
    #: Longest single lease extension, in seconds; 0: the client's default (60 s on
    #: Pub/Sub). Shorter means a crashed worker's messages come back sooner.
    max_lease_extension: float = 0.0


@dataclass(frozen=True)
class SubscriptionSpec:
    """What a subscription should look like on the broker; provisioning makes it so."""

    name: str
    topic: str
    ack_deadline: int = 60
    filter: str = ""
    retry_policy: RetryPolicy | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Short name of the dead-letter topic ("" for none; a full
    #: ``projects/.../topics/...`` path when it lives in another project).
    dead_letter_topic: str = ""
    #: Deliveries before dead-lettering; 0 when there is no dead-letter topic.
    max_delivery_attempts: int = 0
    enable_message_ordering: bool = False
    enable_exactly_once_delivery: bool = False
    #: Seconds without subscriber activity after which the broker deletes the
    #: subscription; None: the broker's default (31 days on Pub/Sub). Set at
    #: creation only (relay's reply subscriptions); provisioning does not compare it.
    expiration_ttl: float | None = None
    #: Seconds an unacked message is kept; None: the broker's default (7 days).
    #: Set at creation only, like ``expiration_ttl``.
    message_retention: float | None = None


class ProvisionAction(str, enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ProvisionResult:
    """What provisioning did to one subscription, and which fields it changed."""

    name: str
    action: ProvisionAction
    changed: tuple[str, ...] = ()
    #: Differences that could not be applied in place (a filter cannot be changed
    #: on an existing Pub/Sub subscription); each entry says what and why.
    conflicts: tuple[str, ...] = ()


class Stream(abc.ABC):
    """A running subscription stream, as returned by ``Transport.subscribe``."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop delivering new messages. Settling delivered ones still works."""

    @abc.abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Flush pending acks/nacks and release the stream. Idempotent."""

    @abc.abstractmethod
    def done(self) -> bool:
        """True once the stream has ended, by ``close()`` or by failing."""

    @abc.abstractmethod
    def exception(self) -> BaseException | None:
        """The error that ended the stream, if it failed; ``None`` otherwise."""

    def connected(self) -> bool:
        """False while the stream is open but cannot reach the broker.

        A transport that reconnects by itself (google's streaming pull does)
        reports the outage here rather than by ending the stream. The default,
        for transports that cannot tell: connected unless ended.
        """
        return not self.done()

    def failure(self) -> str | None:
        """Why the stream, open, is not working: say, it keeps failing with an error
        the transport retries by itself. ``None`` when it works or the transport
        cannot tell (the default)."""
        return None


MessageCallback = Callable[[ReceivedMessage], None]


class Transport(abc.ABC):
    """What relay needs from a broker. Names are short names, already prefixed."""

    @abc.abstractmethod
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        """Send one message; the future resolves to the message id."""

    # Provisioning primitives. The read-only ones (``topic_exists``,
    # ``get_subscription``) are all that PROVISIONING='verify' and ``relay-cli
    # plan`` use; what to change is decided once, in relay.provisioning, for
    # every transport.
    @abc.abstractmethod
    def ensure_topic(self, topic: str) -> bool:
        """Create the topic if it does not exist. True if it was created."""

    @abc.abstractmethod
    def topic_exists(self, topic: str) -> bool:
        """Whether the topic exists (read-only)."""

    @abc.abstractmethod
    def get_subscription(self, name: str) -> SubscriptionSpec | None:
        """The subscription as it is on the broker, or None if it does not exist."""

    @abc.abstractmethod
    def create_subscription(self, spec: SubscriptionSpec) -> bool:
        """Create it; False if it already exists. Fails if the topic does not exist."""

    @abc.abstractmethod
    def update_subscription(self, spec: SubscriptionSpec, fields: tuple[str, ...]) -> None:
        """Set ``fields`` (names from ``relay.provisioning.UPDATABLE``) to ``spec``'s values."""

    def topic_iam_policy(self, topic: str) -> Mapping[str, frozenset[str]]:
        """The topic's IAM bindings, role -> members (read-only; for reports such as
        the Storage service agent's grant in ``relay.contrib.storage``).

        Raises ``NotImplementedError`` saying why where there is no policy to read
        (this default; the Pub/Sub emulator, which has no IAM).
        """
        raise NotImplementedError(f"{type(self).__name__} has no IAM policies to read")

    def delete_subscription(self, name: str) -> bool:
        """Delete the subscription; False if it did not exist.

        Only for subscriptions relay creates for itself at run time (the reply
        subscriptions of ``relay.results``); this default refuses.
        """
        from relay.errors import TransportError

        raise TransportError(
            f"{type(self).__name__} cannot delete subscriptions, so it cannot remove {name!r}"
        )

    def ensure_subscription(self, spec: SubscriptionSpec) -> ProvisionResult:
        """Create the subscription, or update it in place to match ``spec``.

        A subscription on another topic is an error; differences Pub/Sub cannot
        apply in place (filter, message ordering) are returned as conflicts.
        """
        from relay.errors import TransportError
        from relay.provisioning import conflict_text, diff, wrong_topic_text

        for _ in range(2):  # a second round if someone else creates it meanwhile
            current = self.get_subscription(spec.name)
            if current is None:
                if self.create_subscription(spec):
                    return ProvisionResult(spec.name, ProvisionAction.CREATED)
                continue
            if current.topic != spec.topic:
                raise TransportError(wrong_topic_text(spec.name, current.topic, spec.topic))
            updatable, immutable = diff(current, spec)
            conflicts = tuple(conflict_text(c) for c in immutable)
            if not updatable:
                return ProvisionResult(spec.name, ProvisionAction.UNCHANGED, (), conflicts)
            changed = tuple(c.field for c in updatable)
            self.update_subscription(spec, changed)
            return ProvisionResult(spec.name, ProvisionAction.UPDATED, changed, conflicts)
        raise TransportError(f"subscription {spec.name!r} keeps appearing and disappearing")

    @abc.abstractmethod
    def subscribe(
        self, subscription: str, on_message: MessageCallback, flow_control: FlowControl
    ) -> Stream:
        """Start delivering the subscription's messages to ``on_message``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release clients and connections. Idempotent."""
