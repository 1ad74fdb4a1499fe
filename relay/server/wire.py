"""Pull and StreamingPull responses, written straight as protobuf bytes.

A message is serialised once, when it is published; a delivery only adds its
ack id and attempt around those bytes. That keeps a batch of a thousand
messages from being built as a thousand protobuf objects on every delivery.
The field numbers are those of ``google/pubsub/v1/pubsub.proto``.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay.server.queue import Lease

# ReceivedMessage: ack_id = 1, message = 2, delivery_attempt = 3.
# PullResponse / StreamingPullResponse: received_messages = 1;
# StreamingPullResponse.subscription_properties = 4: exactly_once = 1, ordering = 2.
_ACK_ID = b"\x0a"
_MESSAGE = b"\x12"
_ATTEMPT = b"\x18"
_RECEIVED = b"\x0a"
_PROPERTIES = b"\x22"


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def received_messages(leases: Sequence[Lease], with_attempts: bool) -> bytes:
    parts: list[bytes] = []
    append = parts.append
    for lease in leases:
        ack_id = lease.ack_id.encode()
        payload = lease.entry.payload
        body = b"".join(
            (
                _ACK_ID, varint(len(ack_id)), ack_id,
                _MESSAGE, varint(len(payload)), payload,
                _ATTEMPT + varint(lease.entry.attempts) if with_attempts else b"",
            )
        )
        append(_RECEIVED)
        append(varint(len(body)))
        append(body)
    return b"".join(parts)


def subscription_properties(exactly_once: bool, ordering: bool) -> bytes:
    body = (b"\x08\x01" if exactly_once else b"") + (b"\x10\x01" if ordering else b"")
    return _PROPERTIES + varint(len(body)) + body if body else b""
