"""Pub/Sub's delivery policies for a subscription: ``RetryPolicy`` and ``DeadLetterPolicy``.

Both are validated when built, with the bounds Pub/Sub enforces, so a bad one
fails at import (in ``@sub``) or when the settings load, not at provisioning.
``RetryPolicy`` lives in ``relay.transports.base`` (the seam's
``SubscriptionSpec`` carries it) and is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.errors import ConfigurationError
from relay.limits import validate_name

# RetryPolicy is defined by the transport seam, whose SubscriptionSpec carries it.
from relay.transports.base import RetryPolicy

#: Pub/Sub's bounds for a dead-letter policy's ``max_delivery_attempts``.
MIN_DELIVERY_ATTEMPTS = 5
MAX_DELIVERY_ATTEMPTS = 100


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
