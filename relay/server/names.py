"""Pub/Sub's rules for names, messages and settings, and the errors that break them.

Each check raises ``ServiceError`` with the status code, and where it is known
the wording, that Pub/Sub answers with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import grpc

#: Pub/Sub's limits (https://cloud.google.com/pubsub/quotas#resource_limits).
MAX_REQUEST_BYTES = 10_000_000
#: Messages in one Publish request.
MAX_PUBLISH_MESSAGES = 1000
#: Messages in one Pull or StreamingPull response: relay's server's own cap (Pub/Sub
#: may return fewer than asked, so a client cannot count on more).
MAX_RESPONSE_MESSAGES = 1000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024
MAX_FILTER_BYTES = 256
MIN_ACK_DEADLINE = 10
MAX_ACK_DEADLINE = 600
DEFAULT_ACK_DEADLINE = 10
MIN_DELIVERY_ATTEMPTS = 5
MAX_DELIVERY_ATTEMPTS = 100
DEFAULT_DELIVERY_ATTEMPTS = 5
DEFAULT_MIN_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 600.0
MAX_BACKOFF = 600.0

_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
_PROJECT = re.compile(r"[^/]+")


class ServiceError(Exception):
    """A call fails with ``code`` and ``message``; ``details`` are packed
    ``google.protobuf.Any`` messages for the status's details (ErrorInfo)."""

    def __init__(
        self, code: grpc.StatusCode, message: str, details: tuple[object, ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def invalid(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(resource: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={resource}).")


def already_exists(resource: str) -> ServiceError:
    return ServiceError(
        grpc.StatusCode.ALREADY_EXISTS,
        f"Resource already exists in the project (resource={resource}).",
    )


def unimplemented(method: str) -> ServiceError:
    return ServiceError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{method} is not implemented by relay's Pub/Sub server (an in-memory server for "
        "development and tests; see docs/emulator.md for what it serves)",
    )


def push_subscription() -> ServiceError:
    """Pull or StreamingPull on a push subscription (Pub/Sub's answer)."""
    return ServiceError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "This method is not supported for push subscriptions with a defined push "
        "configuration.",
    )


def split_name(name: str, collection: str) -> tuple[str, str]:
    """``projects/P/<collection>/ID`` -> ``(P, ID)``, or INVALID_ARGUMENT."""
    parts = name.split("/")
    if (
        len(parts) != 4
        or parts[0] != "projects"
        or parts[2] != collection
        or not _PROJECT.fullmatch(parts[1])
        or not _ID.fullmatch(parts[3])
        or parts[3].lower().startswith("goog")
    ):
        raise invalid(
            f"Invalid resource name given (name={name}). Refer to "
            "https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names for more "
            "information."
        )
    return parts[1], parts[3]


def project_of(parent: str) -> str:
    parts = parent.split("/")
    if len(parts) != 2 or parts[0] != "projects" or not parts[1]:
        raise invalid(f"Invalid project name given (name={parent}).")
    return parts[1]


def check_attributes(attributes: Mapping[str, str]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise invalid(
            f"Too many attributes: {len(attributes)} (the limit is {MAX_ATTRIBUTES} per "
            "message)."
        )
    for key, value in attributes.items():
        if not key:
            raise invalid("An attribute key must not be empty.")
        if len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES:
            raise invalid(
                f"An attribute key is too long: {len(key.encode())} bytes (the limit is "
                f"{MAX_ATTRIBUTE_KEY_BYTES}; key={key[:40]}...)."
            )
        if len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            raise invalid(
                f"An attribute value is too long: {len(value.encode())} bytes (the limit is "
                f"{MAX_ATTRIBUTE_VALUE_BYTES}; key={key})."
            )


def check_ack_deadline(seconds: int, field: str = "ack_deadline_seconds") -> None:
    if not MIN_ACK_DEADLINE <= seconds <= MAX_ACK_DEADLINE:
        raise invalid(
            f"Invalid {field}: {seconds} (it must be between {MIN_ACK_DEADLINE} and "
            f"{MAX_ACK_DEADLINE} seconds)."
        )
