"""Transports: the one seam between relay and a message broker.

``base`` says what a transport must do, ``memory`` is the in-process fake that
tests (yours and ours) use, and ``pubsub`` is the only package in relay that
imports google-cloud-pubsub.
"""

from relay.transports.base import (
    FlowControl,
    ProvisionResult,
    ReceivedMessage,
    Stream,
    SubscriptionSpec,
    Transport,
)

__all__ = [
    "FlowControl",
    "ProvisionResult",
    "ReceivedMessage",
    "Stream",
    "SubscriptionSpec",
    "Transport",
]
