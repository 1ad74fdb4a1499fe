"""One message on its way out: ``Outgoing.prepare`` validates and encodes it
and runs the ``pre_publish`` hooks; the ``Sending`` it returns carries the
message to the transport and through to its one post-publish hook.

The ``Publisher`` (``relay.publisher``) prepares every message here, whichever
way it is published, then takes room in its budget and hands it over.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from relay.codec import Codec
from relay.errors import ConfigurationError
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


class Sending:
    """One message on its way: what the hooks saw, when it started and its share
    of the budget. Exactly one post-publish hook fires for it: the publisher's
    table of messages in flight decides which, by an atomic pop.

    Only that table refers to it once the message is handed over, so a finished
    future does not keep the message (payload included) alive, however long the
    caller keeps the future."""

    __slots__ = ("message", "size", "started")

    def __init__(self, message: OutgoingMessage, started: float) -> None:
        self.message = message
        self.started = started
        self.size = len(message.payload)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class Outgoing:
    """What a publisher checks and builds each message with, fixed at its start:
    the settings' topic prefix and encoder, the transport's unsendable
    attribute names, and the topic names already validated."""

    def __init__(self, settings: Settings, transport: Transport) -> None:
        self._prefix = settings.topic_prefix
        self._codec = Codec(settings.encoder)
        #: Attribute names the transport cannot send (``Transport.unsendable_attributes``).
        self._unsendable: frozenset[str] = getattr(
            transport, "unsendable_attributes", frozenset()
        )
        self._transport_name = _declaring(transport, "unsendable_attributes")
        #: Short topic name -> prefixed and validated name (bounded: see ``_topic``).
        self._topics: dict[str, str] = {}

    def prepare(
        self,
        chain: MiddlewareChain,
        topic: str,
        data: Any,
        ordering_key: str,
        attrs: Mapping[str, str] | None,
        attributes: dict[str, str],
    ) -> Sending:
        """Validate and encode; run ``pre_publish``. Raises on bad input.

        ``attributes`` must be the caller's own fresh dict (``**attributes``):
        without ``attrs`` and ``pre_publish`` hooks it becomes the message's."""
        full_topic = self._topics.get(topic)
        if full_topic is None:
            full_topic = self._topic(topic)
        hooked = chain.has("pre_publish")
        merged: dict[str, str]
        if attrs:
            merged = dict(attrs)
            merged.update(attributes)
        elif hooked:  # _who_added needs the caller's own names after the hooks ran
            merged = dict(attributes)
        else:
            merged = attributes
        added = NOBODY
        if "published_at" not in merged:
            merged["published_at"] = str(time.time())
            added = _ADDED_BY_RELAY
        unsendable = self._unsendable
        validate_attributes(
            merged, added=added, unsendable=unsendable, transport=self._transport_name
        )
        if ordering_key and not isinstance(ordering_key, str):
            raise ConfigurationError(f"ordering_key must be a string, got {ordering_key!r}")
        payload = self._codec.encode(data)
        validate_payload(full_topic, payload)

        message = OutgoingMessage(full_topic, data, merged, ordering_key, payload)
        sending = Sending(message, time.perf_counter())
        if hooked:
            chain.run("pre_publish", message)
            final = message.attributes
            if len(final) > MAX_ATTRIBUTES:  # only the error for too many needs who added what
                added = _who_added(final, attrs, attributes)
            try:
                # what middleware added counts too
                validate_attributes(
                    final, added=added, unsendable=unsendable, transport=self._transport_name
                )
            except ConfigurationError as exc:
                # pre_publish ran, so its post hook must too (a span must end).
                chain.run("post_publish_failure", message, exc, sending.elapsed())
                raise
            sending.size = len(message.payload)
        return sending

    def _topic(self, topic: str) -> str:
        """``topic`` prefixed and validated; remembered for the next publish."""
        full_topic = validate_name(self._prefix + topic, "topic")
        topics = self._topics
        if len(topics) >= 4096:  # topic names built from data: do not grow without bound
            topics.clear()
        topics[topic] = full_topic
        return full_topic


def _declaring(obj: object, attribute: str) -> str:
    """The name of the class that set ``attribute`` for ``obj`` (not of a subclass)."""
    for cls in type(obj).__mro__:
        if attribute in vars(cls):
            return cls.__name__
    return type(obj).__name__
