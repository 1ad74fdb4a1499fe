"""Pub/Sub's delivery policies for a subscription: ``RetryPolicy`` and ``DeadLetterPolicy``.

Both are validated when built, with the bounds Pub/Sub enforces, so a bad one
fails at import (in ``@sub``) or when the settings load, not at provisioning.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.errors import ConfigurationError
from relay.limits import validate_name

#: Pub/Sub's bounds for a dead-letter policy's ``max_delivery_attempts``.
MIN_DELIVERY_ATTEMPTS = 5
MAX_DELIVERY_ATTEMPTS = 100


@dataclass(frozen=True)
class RetryPolicy:
    """Server-side redelivery backoff for nacked messages, in seconds.

    Pub/Sub waits between ``minimum_backoff`` and ``maximum_backoff`` (growing
    exponentially) before redelivering a nacked or expired message.
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
class DeadLetterPolicy:
    """Where Pub/Sub forwards a message it has delivered too often.

    After ``max_delivery_attempts`` deliveries (5 to 100) that ended in a nack or
    an expired lease, Pub/Sub publishes the message to ``topic`` and stops
    delivering it here. relay creates the topic and, with ``keep=True``, a
    subscription of the same name on it, so dead letters are stored until
    someone reads them (a topic without subscriptions drops what it receives).
    relay also sends messages whose payload it cannot decode there at once.
    """

    topic: str
    max_delivery_attempts: int = 5
    keep: bool = True

    def __post_init__(self) -> None:
        validate_name(self.topic, "dead-letter topic")
        attempts = self.max_delivery_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not (
            MIN_DELIVERY_ATTEMPTS <= attempts <= MAX_DELIVERY_ATTEMPTS
        ):
            raise ConfigurationError(
                f"max_delivery_attempts={attempts!r} is invalid: Pub/Sub accepts a whole number "
                f"from {MIN_DELIVERY_ATTEMPTS} to {MAX_DELIVERY_ATTEMPTS}"
            )
        if not isinstance(self.keep, bool):
            raise ConfigurationError(f"DeadLetterPolicy keep={self.keep!r}: expected True/False")


__all__ = ["MAX_DELIVERY_ATTEMPTS", "MIN_DELIVERY_ATTEMPTS", "DeadLetterPolicy", "RetryPolicy"]
