"""relay's exceptions. Every error relay raises on purpose is a ``RelayError``."""

from __future__ import annotations

from relay.redaction import redact


class RelayError(Exception):
    """Base class of every error relay raises deliberately.

    Its message never holds a credential: text arguments pass through
    ``relay.redaction.redact`` when the exception is made, so a private key
    quoted by whatever code built the message (a settings dict, a cause's text)
    is gone from ``str()``, ``repr()`` and every traceback of it.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


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


class EncodeError(RelayError, TypeError):
    """``data`` cannot be published as JSON as it is.

    The message names the value, where it is in the data and the fix. It is a
    ``TypeError`` because ``publish()`` has always raised ``TypeError`` for data
    it cannot encode.
    """


class FilterError(RelayError):
    """A ``filter_by`` or ``FILTER_SUBS_BY`` filter raised or did not return a bool.

    The message names the filter; ``__cause__`` holds what it raised, if it did.
    """


class SkipMessage(RelayError):
    """Raise from a handler: this message is not for it. Acked, reported as skipped.

    Like a filter that returns False, but decided on the data: the handler
    looked and chose not to act (a Celery route's ``should_schedule`` said no).
    ``post_process_message_failure`` does not run; the reason is logged at INFO.
    """


class UnrecoverableError(RelayError):
    """Raise from a handler: the message can never succeed, so do not redeliver it.

    A record that no longer exists, a request that can never be valid, a task
    whose arguments no longer fit its function. The message is a failure
    (``post_process_message_failure`` runs) and is sent to the subscription's
    dead-letter topic if it has one, else acked: never redelivered forever,
    never dropped without a word.
    """


class TransportError(RelayError):
    """The transport could not do what was asked (provisioning, connecting)."""


class ProvisioningError(TransportError):
    """Pub/Sub does not match the code and relay may not (or cannot) make it match."""


class AckError(RelayError):
    """Pub/Sub did not accept an ack (exactly-once delivery reports this).

    The message may be delivered again; ``__cause__`` holds the underlying error.
    """
