"""The message that middleware and the processing pipeline see."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relay.transports.base import ReceivedMessage

#: How many bytes of a payload go into logs and error reports.
PAYLOAD_PREVIEW_BYTES = 256


def preview(payload: bytes, limit: int = PAYLOAD_PREVIEW_BYTES) -> str:
    """A safe, truncated rendering of a payload for logs."""
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + (f"... ({len(payload)} bytes)" if len(payload) > limit else "")


class Message:
    """One received message: decoded ``data`` plus Pub/Sub's metadata.

    ``state`` is a dict that belongs to this message alone: middleware keeps
    per-message values there (a span, a start time), never on ``self``, so one
    middleware instance serves any number of concurrent messages.
    """

    __slots__ = ("_received", "data", "retries", "state")

    def __init__(self, received: ReceivedMessage) -> None:
        self._received = received
        #: The decoded payload (``None`` until decoded, or if it could not be).
        self.data: Any = None
        self.state: dict[str, Any] = {}
        #: In-process retries of the handler so far (``RetryMiddleware``); 0 on
        #: the first call. Pub/Sub's redeliveries are ``delivery_attempt``.
        self.retries = 0

    @property
    def raw(self) -> bytes:
        return self._received.data

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self._received.attributes)

    @property
    def id(self) -> str:
        return self._received.message_id

    message_id = id

    @property
    def publish_time(self) -> datetime | None:
        return self._received.publish_time

    @property
    def delivery_attempt(self) -> int | None:
        """Which delivery this is, from 1; Pub/Sub sets it only on subscriptions
        with a dead-letter policy (None otherwise)."""
        return self._received.delivery_attempt

    @property
    def ordering_key(self) -> str:
        return self._received.ordering_key

    def preview(self) -> str:
        return preview(self._received.data)

    def __repr__(self) -> str:
        return f"<Message id={self.id} attributes={self.attributes}>"


class Status(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"


class Action(str, enum.Enum):
    ACK = "ack"
    NACK = "nack"
    #: Publish the message to the subscription's dead-letter topic, then ack it
    #: (nack it if that publish fails, so nothing is lost).
    DEAD_LETTER = "dead_letter"


@dataclass
class Outcome:
    """How processing went. Post-process hooks receive it.

    ``action`` is what the worker will do with the message once the post hooks
    have run. A middleware may change it deliberately (say, turn a nack into an
    ack); a hook that raises never changes it.
    """

    status: Status
    action: Action
    elapsed: float
    result: Any = None
    exception: BaseException | None = None
    #: Set by a ``post_process_message_failure`` hook (``RetryMiddleware``) to
    #: call the handler again after this many seconds instead of settling.
    retry_in: float | None = None


@dataclass
class OutgoingMessage:
    """A message on its way out; publish hooks receive it.

    ``pre_publish`` hooks may add to ``attributes`` (a tracing middleware injects
    its context there); ``state`` is per-publish scratch space for middleware.
    """

    topic: str
    data: Any
    attributes: dict[str, str]
    ordering_key: str = ""
    payload: bytes = b""
    message_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
