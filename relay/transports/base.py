"""The transport seam: the whole surface relay needs from a message broker.

The Publisher and the Worker talk to a ``Transport`` and to nothing else. A
transport deals in short resource names (``"orders"``, not
``"projects/p/topics/orders"``) and raw bytes; encoding, validation, middleware,
prefixes, the ack policy and deciding what provisioning changes all live above
it, so a transport can be replaced (the in-memory one in tests, a leaner gRPC
one later) without touching them. This module imports only the standard library
and ``relay.errors`` (``tests/unit/test_seam.py`` checks it), so it is all a
transport author needs to read.

What a transport implements (``tests/transports/test_contract.py`` runs the
same checks against the memory transport and the Pub/Sub emulator):

``Transport``, eight abstract methods and one capability,
``unsendable_attributes`` (attribute names it cannot send; empty by default):

* ``publish(topic, data, attributes, *, ordering_key="")``: never blocks on the
  network; returns a future resolved with the server-assigned message id, or
  with the exception that made it fail. Only a configuration problem (say,
  credentials that cannot be loaded) is raised by ``publish`` itself, as
  ``ConfigurationError``.
* ``ensure_topic(topic)``: create the topic if missing; True if it was created.
* ``topic_exists(topic)``: read-only; whether the topic exists.
* ``get_subscription(name)``: read-only; the subscription as a
  ``SubscriptionSpec`` (name, topic and the fields the broker reports), or None.
* ``create_subscription(spec)``: create it as ``spec`` says; False if it already
  exists; ``TransportError`` if the topic does not exist.
* ``update_subscription(spec, fields)``: set the named fields (only those in
  ``UPDATABLE``) to ``spec``'s values.
* ``subscribe(subscription, on_message, flow_control)``: start delivering in
  the background and return a ``Stream`` at once (see below).
* ``close()``: release clients and connections; idempotent.

and two with defaults: ``delete_subscription(name)`` (refuses with
``TransportError``; relay deletes only its own reply subscriptions) and
``topic_iam_policy(topic)`` (raises ``NotImplementedError``). What to create or
change is decided in ``relay.provisioning``, for every transport, from the
read-only calls above; a transport only carries it out.

``Stream``, four abstract methods: ``cancel()`` stops delivering new messages
but keeps acks and nacks of messages already delivered working, so the Worker
can drain; ``close(timeout)`` then flushes pending acks and releases the stream
(idempotent); ``done()`` is True once it has ended, by ``close()`` or by
failing; ``exception()`` is the error that ended it, or None. A transport may
hold the nacks issued after ``cancel()`` until ``close()`` has stopped the
stream from receiving, so that the broker does not hand the messages back to
it. Optional: ``connected()`` (False while open but unable to reach the broker)
and ``failure()`` (why an open stream is not working).

``ReceivedMessage``, two abstract methods and six attributes (``data``,
``attributes``, ``message_id``, ``publish_time``, ``delivery_attempt``,
``ordering_key``): ``ack()`` and ``nack()``. Each message is settled exactly
once; calls after the first are ignored. Until it is settled the transport
keeps extending its lease (up to ``FlowControl.max_lease_duration``). Optional:
``ack_with_response()`` (a future failing if the broker did not apply the ack).

The ``on_message`` callback given to ``subscribe`` is invoked on a transport
thread and must return quickly: the Worker hands the message to its own
executor. ``FlowControl`` bounds what is outstanding (delivered and not yet
settled) per stream. ``SubscriptionSpec`` (with its ``RetryPolicy``) is what a
subscription should look like; ``ProvisionResult`` and ``ProvisionAction`` are
what provisioning reports, not something a transport returns.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from relay.errors import ConfigurationError, TransportError

#: The ``SubscriptionSpec`` fields ``Transport.update_subscription`` may be asked
#: to set: those Pub/Sub can change on an existing subscription. The others are
#: fixed when it is created.
UPDATABLE = (
    "ack_deadline",
    "retry_policy",
    "labels",
    "dead_letter_topic",
    "max_delivery_attempts",
    "enable_exactly_once_delivery",
    "push_endpoint",
    "push_service_account",
    "push_audience",
)

#: The ``SubscriptionSpec`` fields that make up the push configuration; set
#: together (Pub/Sub replaces the whole push configuration at once).
PUSH_FIELDS = ("push_endpoint", "push_service_account", "push_audience")


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
class RetryPolicy:
    """Server-side redelivery backoff for nacked messages, in seconds.

    Pub/Sub waits between ``minimum_backoff`` and ``maximum_backoff`` (growing
    exponentially) before redelivering a nacked or expired message. Public as
    ``relay.RetryPolicy``; defined here because ``SubscriptionSpec`` carries it.
    """

    minimum_backoff: float = 10.0
    maximum_backoff: float = 600.0

    def __post_init__(self) -> None:
        for field_name in ("minimum_backoff", "maximum_backoff"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(
                    f"RetryPolicy {field_name}={value!r}: expected a number of seconds"
                )
        lo, hi = self.minimum_backoff, self.maximum_backoff
        if not 0 < lo <= hi <= 600:
            raise ConfigurationError(
                f"RetryPolicy(minimum_backoff={lo!r}, maximum_backoff={hi!r}) is invalid: "
                "Pub/Sub needs 0 < minimum_backoff <= maximum_backoff <= 600 seconds"
            )


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
    #: Where the broker POSTs each message; "" for a pull subscription. Changing
    #: it switches the subscription between pull and push in place.
    push_endpoint: str = ""
    #: The service account whose OIDC token the broker attaches to each push
    #: request ("" for none: unauthenticated push).
    push_service_account: str = ""
    #: The token's audience; only with ``push_service_account``. Provisioning
    #: passes the endpoint URL when none is declared (Pub/Sub's own default).
    push_audience: str = ""

    @property
    def is_push(self) -> bool:
        """True for a push subscription (it has an endpoint)."""
        return bool(self.push_endpoint)


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

    #: Attribute names this transport cannot send (the pubsub transport: those
    #: google-cloud-pubsub's ``publish()`` takes as its own parameters). The
    #: ``Publisher`` refuses them with ``ConfigurationError`` before anything is
    #: sent; empty (the default): any name goes.
    unsendable_attributes: frozenset[str] = frozenset()

    @abc.abstractmethod
    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], *, ordering_key: str = ""
    ) -> Future[str]:
        """Send one message; the future resolves to the message id."""

    # Provisioning primitives. The read-only ones (``topic_exists``,
    # ``get_subscription``) are all that PROVISIONING='verify' and ``relay-cli
    # plan`` use; what to change is decided once, in relay.provisioning
    # (``ensure_subscription``), for every transport.
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
        """Set ``fields`` (names from ``UPDATABLE``) to ``spec``'s values."""

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
        raise TransportError(
            f"{type(self).__name__} cannot delete subscriptions, so it cannot remove {name!r}"
        )

    @abc.abstractmethod
    def subscribe(
        self, subscription: str, on_message: MessageCallback, flow_control: FlowControl
    ) -> Stream:
        """Start delivering the subscription's messages to ``on_message``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release clients and connections. Idempotent."""
