"""Declaring a bucket subscription: ``@bucket_sub``, ``BucketSubscription``, ``NotificationSpec``.

Everything here is checked when the decorator runs (bucket name, event types,
payload format, the handler's signature), and needs no google-cloud-storage.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from relay.errors import ConfigurationError
from relay.filters import Filter
from relay.policies import RetryPolicy
from relay.subscription import Handler, Subscription

if TYPE_CHECKING:
    from relay.contrib.storage.notifications import NotificationStep
    from relay.settings import Settings

F = TypeVar("F", bound=Handler)

#: The event types Cloud Storage reports, in its documentation's order.
EVENT_TYPES = ("OBJECT_FINALIZE", "OBJECT_METADATA_UPDATE", "OBJECT_DELETE", "OBJECT_ARCHIVE")
#: The payload format relay asks for: the object resource, as JSON.
JSON_API_V1 = "JSON_API_V1"
#: Cloud Storage's other payload format: no payload at all.
NONE = "NONE"
#: The custom attributes that mark a notification configuration as relay's.
MARK_SUBSCRIPTION = "relay-subscription"
MARK_HANDLER = "relay-handler"

_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_GOOGLE = re.compile(r"g[o0][o0]g[l1]e")


def check_bucket_name(bucket: object) -> str:
    """``bucket`` if it follows Cloud Storage's bucket naming rules, else ConfigurationError.

    The rules (https://cloud.google.com/storage/docs/buckets#naming): 3 to 63
    characters (up to 222 with dots, each dot-separated part at most 63);
    lowercase letters, digits, ``-``, ``_`` and ``.``; a letter or digit first
    and last; not an IP address; not starting with ``goog``; no ``google`` or
    close misspellings.
    """
    if not isinstance(bucket, str):
        raise ConfigurationError(
            f"@bucket_sub needs the bucket's name as a string, like 'my-uploads'; got {bucket!r}"
        )
    fix = "see https://cloud.google.com/storage/docs/buckets#naming"
    if bucket.startswith("gs://"):
        raise ConfigurationError(
            f"bucket {bucket!r}: give the bucket's name without gs://, like {bucket[5:]!r}"
        )
    if bucket != bucket.lower():
        raise ConfigurationError(
            f"bucket {bucket!r}: bucket names are lowercase; did you mean {bucket.lower()!r}?"
        )
    parts = bucket.split(".")
    longest = 222 if len(parts) > 1 else 63
    if not 3 <= len(bucket) <= longest or any(len(part) > 63 for part in parts):
        raise ConfigurationError(
            f"bucket {bucket!r} is {len(bucket)} characters long: a bucket name has 3 to 63 "
            "characters (up to 222 with dots, each dot-separated part at most 63); " + fix
        )
    if not _BUCKET_CHARS.match(bucket):
        raise ConfigurationError(
            f"bucket {bucket!r}: a bucket name holds only lowercase letters, digits, '-', '_' "
            "and '.', and starts and ends with a letter or digit; " + fix
        )
    if _IP_ADDRESS.match(bucket):
        raise ConfigurationError(f"bucket {bucket!r}: a bucket name cannot be an IP address")
    if bucket.startswith("goog") or _GOOGLE.search(bucket):
        raise ConfigurationError(
            f"bucket {bucket!r}: a bucket name cannot start with 'goog' or contain 'google' "
            "or a close misspelling of it; " + fix
        )
    return bucket


def check_events(events: str | Iterable[str] | None, owner: str) -> tuple[str, ...]:
    """The event types, in Cloud Storage's order; ``()`` (every type) for None."""
    if events is None:
        return ()
    given = [events] if isinstance(events, str) else list(events)
    if not given:
        raise ConfigurationError(
            f"{owner}: events=[] selects no event at all; leave events out to receive every "
            f"event type, or name some of {', '.join(EVENT_TYPES)}"
        )
    for event in given:
        if event not in EVENT_TYPES:
            close = difflib.get_close_matches(str(event).upper(), EVENT_TYPES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigurationError(
                f"{owner}: unknown Cloud Storage event type {event!r}; {hint}the event types "
                f"are {', '.join(EVENT_TYPES)}"
            )
    return tuple(e for e in EVENT_TYPES if e in given)


def check_payload_format(payload_format: object, owner: str) -> str:
    if payload_format == NONE:
        raise ConfigurationError(
            f"{owner}: payload_format='NONE' makes Cloud Storage send an empty payload, and "
            "relay decodes every message as JSON, so each event would count as undecodable; "
            f"use payload_format={JSON_API_V1!r} (the default): the object resource as JSON"
        )
    if payload_format != JSON_API_V1:
        raise ConfigurationError(
            f"{owner}: unknown payload_format {payload_format!r}; relay supports "
            f"{JSON_API_V1!r} (the object resource as JSON), the default"
        )
    return JSON_API_V1


@dataclass(frozen=True)
class NotificationSpec:
    """What a bucket's notification configuration should say (topic aside).

    ``event_types`` empty means every event type, as in Cloud Storage.
    """

    bucket: str
    event_types: tuple[str, ...] = ()
    object_name_prefix: str = ""
    payload_format: str = JSON_API_V1

    def selects(self, attributes: Mapping[str, str]) -> bool:
        """Whether a message is a notification this spec asked for.

        Cloud Storage filters by event type and prefix before it publishes; the
        Pub/Sub emulator has no Storage and applies nothing, and a topic may
        carry other buckets' notifications too, so relay checks again.
        """
        event = attributes.get("eventType")
        if event is None or (self.event_types and event not in self.event_types):
            return False
        if attributes.get("bucketId") != self.bucket:
            return False
        return attributes.get("objectId", "").startswith(self.object_name_prefix)

    def describe(self) -> tuple[str, ...]:
        """Its fields, one ``name: value`` line each, as plans show them."""
        lines = [f"events: {', '.join(self.event_types) or 'every event type'}"]
        if self.object_name_prefix:
            lines.append(f"object_name_prefix: {self.object_name_prefix!r}")
        lines.append(f"payload_format: {self.payload_format}")
        return tuple(lines)


class NotificationFilter:
    """The ``filter_by`` a bucket subscription adds: only the events it asked for.

    A notification of another event type, another bucket or outside the object
    name prefix (or a message that is no notification at all) is acked as
    skipped without calling the handler.
    """

    def __init__(self, spec: NotificationSpec) -> None:
        self.spec = spec

    def __call__(self, **attributes: str) -> bool:
        return self.spec.selects(attributes)

    def __repr__(self) -> str:
        spec = self.spec
        events = ",".join(spec.event_types) or "every event type"
        return f"<NotificationFilter gs://{spec.bucket}/{spec.object_name_prefix} {events}>"


def default_topic(spec: NotificationSpec) -> str:
    """``gcs-BUCKET`` for every event type, else ``gcs-BUCKET-finalize-delete`` and so on.

    One topic per bucket and set of events: two handlers for different events
    get their own topics, subscriptions and notifications, and renaming a
    handler changes none of them.
    """
    events = "".join(f"-{e.removeprefix('OBJECT_').lower().replace('_', '-')}"
                     for e in spec.event_types)
    return f"gcs-{spec.bucket}{events}"


class BucketSubscription(Subscription):
    """A ``Subscription`` to a topic that a bucket's notification configuration feeds.

    It is consumed, filtered, acked and dead-lettered like any subscription;
    provisioning also makes the bucket's notification configuration (see
    ``relay.contrib.storage.notifications``). The handler is called as
    ``fn(object_resource, **attributes)``.
    """

    def __init__(
        self,
        func: Handler,
        bucket: str,
        *,
        events: str | Iterable[str] | None = None,
        topic: str | None = None,
        object_name_prefix: str = "",
        payload_format: str = JSON_API_V1,
        filter_by: Filter | Sequence[Filter] | None = None,
        topic_prefix: str = "",
        **options: Any,
    ) -> None:
        owner = f"@bucket_sub({bucket!r})"
        if not isinstance(object_name_prefix, str):
            raise ConfigurationError(
                f"{owner}: object_name_prefix must be a string like 'incoming/', "
                f"got {object_name_prefix!r}"
            )
        self.notification = NotificationSpec(
            check_bucket_name(bucket),
            check_events(events, owner),
            object_name_prefix,
            check_payload_format(payload_format, owner),
        )
        self.topic_given = topic is not None
        own: list[Any] = [NotificationFilter(self.notification)]
        if isinstance(filter_by, (list, tuple)):
            own.extend(filter_by)
        elif filter_by is not None:
            own.append(filter_by)
        super().__init__(
            func,
            topic if topic is not None else default_topic(self.notification),
            filter_by=own,
            topic_prefix=topic_prefix,
            **options,
        )

    def provisioning_steps(self, settings: Settings) -> tuple[NotificationStep]:
        """The bucket's notification configuration (``relay.provisioning.HasExtraSteps``)."""
        from relay.contrib.storage.notifications import NotificationStep

        return (NotificationStep(self, settings),)

    def with_options(self, **changes: Any) -> BucketSubscription:
        spec = self.notification
        current: dict[str, Any] = {
            "bucket": spec.bucket,
            "events": spec.event_types or None,
            "object_name_prefix": spec.object_name_prefix,
            "payload_format": spec.payload_format,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "filter_by": [f for f in self.filters if not isinstance(f, NotificationFilter)]
            or None,
            "retry_policy": self.retry_policy,
            "ack_deadline": self.ack_deadline,
            "dead_letter_topic": self.dead_letter_topic,
            "max_delivery_attempts": self.max_delivery_attempts,
            "enable_exactly_once_delivery": self.enable_exactly_once_delivery,
        }
        if self.topic_given:
            current["topic"] = self.topic
        current.update(changes)
        bucket = current.pop("bucket")
        return BucketSubscription(self._func, bucket, topic_prefix=self.topic_prefix, **current)

    def __repr__(self) -> str:
        return (
            f"<BucketSubscription {self.name} gs://{self.notification.bucket} "
            f"topic={self.full_topic} handler={self.handler_name}>"
        )


def bucket_sub(
    bucket: str,
    /,
    *,
    events: str | Iterable[str] | None = None,
    topic: str | None = None,
    object_name_prefix: str = "",
    payload_format: str = JSON_API_V1,
    prefix: str | None = None,
    suffix: str | None = None,
    filter_by: Filter | Sequence[Filter] | None = None,
    retry_policy: RetryPolicy | None = None,
    ack_deadline: int | None = None,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int | None = None,
    enable_exactly_once_delivery: bool = False,
) -> Callable[[F], BucketSubscription]:
    """Declare a handler for a bucket's object events: ``@bucket_sub("uploads", events=[...])``.

    ``events``: Cloud Storage event types (``EVENT_TYPES``); every type if left
    out. ``topic``: the topic the notifications go to (default
    ``default_topic``: ``gcs-BUCKET`` plus the events). ``object_name_prefix``:
    only objects whose names start with it. The other options are ``@sub``'s.
    The handler is called as ``fn(object_resource, **attributes)``, with
    Cloud Storage's attributes (``eventType``, ``bucketId``, ``objectId``,
    ``objectGeneration``, ``eventTime``, ...); events it did not ask for are
    acked as skipped.
    """
    owner = f"@bucket_sub({bucket!r})"
    check_bucket_name(bucket)  # now, so the error points at the decorator's line
    check_events(events, owner)
    check_payload_format(payload_format, owner)

    def decorator(func: F) -> BucketSubscription:
        return BucketSubscription(
            func,
            bucket,
            events=events,
            topic=topic,
            object_name_prefix=object_name_prefix,
            payload_format=payload_format,
            prefix=prefix,
            suffix=suffix,
            filter_by=filter_by,
            retry_policy=retry_policy,
            ack_deadline=ack_deadline,
            dead_letter_topic=dead_letter_topic,
            max_delivery_attempts=max_delivery_attempts,
            enable_exactly_once_delivery=enable_exactly_once_delivery,
        )

    return decorator
