"""relay's exceptions. Every error relay raises on purpose is a ``RelayError``."""

from __future__ import annotations


class RelayError(Exception):
    """Base class of every error relay raises deliberately."""


class ConfigurationError(RelayError, ValueError):
    """A setting, declaration or argument is wrong; the message names it and the fix.

    It is also a ``ValueError`` so code written against plain validation errors
    catches it.
    """


class PublishError(RelayError):
    """A blocking publish failed; ``__cause__`` holds the underlying error."""

    def __init__(self, topic: str, cause: BaseException) -> None:
        super().__init__(f"publishing to topic {topic!r} failed: {type(cause).__name__}: {cause}")
        self.topic = topic
        self.cause = cause


class DecodeError(RelayError):
    """A received payload is not valid JSON (or not UTF-8)."""


class TransportError(RelayError):
    """The transport could not do what was asked (provisioning, connecting)."""


class ProvisioningError(TransportError):
    """Pub/Sub does not match the code and relay may not (or cannot) make it match."""


class AckError(RelayError):
    """Pub/Sub did not accept an ack (exactly-once delivery reports this).

    The message may be delivered again; ``__cause__`` holds the underlying error.
    """
