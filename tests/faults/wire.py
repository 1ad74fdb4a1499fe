"""``WireLoggedTransport`` and ``WireLoggedGrpcTransport``: relay's transports on
google's client and on the gRPC layer, with the acks the emulator took logged.

For a worker in another process (``RELAY_TRANSPORT=tests.faults.wire.WireLoggedTransport``):
it is ``PubSubTransport`` with a subscriber client built on an intercepted gRPC
channel to ``PUBSUB_EMULATOR_HOST``, the way ``tests/conftest.py``'s
``make_pubsub_transport`` does in process. Each Acknowledge, and each
ModifyAckDeadline to 0 (a nack), that the emulator *accepted* appends
``ack N`` or ``nack N`` (N ack ids) to the file named by ``FAULTS_WIRE_LOG``.

``WireLoggedGrpcTransport`` is ``GrpcTransport`` with the same log written by a
``grpc.aio`` interceptor.

On the emulator an ack that never arrived shows up as a redelivery only a
minute or more later, so this log is how a test proves the acks were sent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from relay.settings import Settings
from relay.transports.grpc import GrpcTransport
from relay.transports.pubsub import PubSubTransport


def _kind(method: Any, request: Any) -> str | None:
    """"ack" or "nack" for an Acknowledge or a ModifyAckDeadline to 0, else None."""
    name = method.decode() if isinstance(method, bytes) else method
    if name.endswith("/Acknowledge"):
        return "ack"
    if name.endswith("/ModifyAckDeadline") and request.ack_deadline_seconds == 0:
        return "nack"
    return None


class _AckLog(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        kind = _kind(details.method, request)
        if kind is not None and outcome.exception() is None:
            os.write(self._fd, f"{kind} {len(request.ack_ids)}\n".encode())
        return outcome


class _AioAckLog(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(details, request)
        kind = _kind(details.method, request)
        if kind is None:
            return call
        try:
            await call
        except grpc.aio.AioRpcError:
            return call
        os.write(self._fd, f"{kind} {len(request.ack_ids)}\n".encode())
        return call


class WireLoggedTransport(PubSubTransport):
    def __init__(self, settings: Settings) -> None:
        host = settings.emulator_host
        if not host:
            raise RuntimeError("WireLoggedTransport is for the emulator: set PUBSUB_EMULATOR_HOST")
        channel = grpc.intercept_channel(
            grpc.insecure_channel(host), _AckLog(os.environ["FAULTS_WIRE_LOG"])
        )
        subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
        super().__init__(settings, subscriber_client=subscriber)


class WireLoggedGrpcTransport(GrpcTransport):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, interceptors=[_AioAckLog(os.environ["FAULTS_WIRE_LOG"])])


def wire_counts(path: Path) -> dict[str, int]:
    """``{"ack": n, "nack": n}``: ack ids the emulator accepted, from the log."""
    counts = {"ack": 0, "nack": 0}
    if path.exists():
        for line in path.read_text().splitlines():
            kind, n = line.split()
            counts[kind] += int(n)
    return counts
