"""Pieces of ``GrpcTransport`` checked without a server: the lease policy, the
flow-control share of each stream, failure reporting, ErrorInfo parsing."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from relay.transports.base import FlowControl
from relay.transports.grpc.channel import ack_id_errors
from relay.transports.grpc.health import Health
from relay.transports.grpc.lease import Histogram, stream_ack_deadline
from relay.transports.grpc.stream import share


def test_the_stream_ack_deadline_follows_flow_max_lease_extension():
    assert stream_ack_deadline(FlowControl()) == 60
    assert stream_ack_deadline(FlowControl(max_lease_extension=5)) == 10
    assert stream_ack_deadline(FlowControl(max_lease_extension=30)) == 30
    assert stream_ack_deadline(FlowControl(max_lease_extension=900)) == 600


def test_extensions_last_the_99th_percentile_of_settle_times():
    histogram = Histogram()
    assert histogram.percentile(99) == 10
    for _ in range(98):
        histogram.add(1.0)
    histogram.add(45.2)
    histogram.add(45.9)
    assert histogram.percentile(99) == 45
    histogram.add(10_000)
    assert histogram.percentile(100) == 600


def test_each_stream_gets_its_share_of_flow_control():
    flow = FlowControl(max_messages=5, max_bytes=1001, max_lease_extension=20)
    assert share(flow, 1) is flow
    part = share(flow, 2)
    assert (part.max_messages, part.max_bytes, part.max_lease_extension) == (3, 501, 20)


def test_failure_is_reported_after_repeated_errors_and_heals():
    health = Health(heal_after=60)
    health.ended("INTERNAL", "boom")
    assert health.failure() is None  # one error is not "keeps failing"
    health.ended("INTERNAL", "boom")
    assert "INTERNAL: boom" in (health.failure() or "")
    health.healed()
    assert health.failure() is None
    for _ in range(2):
        health.ended("UNAVAILABLE", "")
    assert health.failure() is None  # UNAVAILABLE counts from the third
    health.ended("UNAVAILABLE", "")
    assert health.failure() is not None


def test_exactly_once_ack_failures_are_read_from_error_info():
    info = error_details_pb2.ErrorInfo(
        reason="EXACTLY_ONCE_ACKID_FAILURE", domain="pubsub.googleapis.com",
        metadata={"a1": "PERMANENT_FAILURE_INVALID_ACK_ID", "a2": "TRANSIENT_FAILURE_X"},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=3, message="bad", details=[detail])
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(),
        grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString())),
        details="bad",
    )
    assert ack_id_errors(error) == {
        "a1": "PERMANENT_FAILURE_INVALID_ACK_ID", "a2": "TRANSIENT_FAILURE_X",
    }
    assert ack_id_errors(RuntimeError("x")) == {}


def test_the_channel_goes_to_the_endpoint_override_with_credentials(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    from relay.settings import Settings
    from relay.transports.grpc.channel import build_channel, shared_loop

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    loaded = []

    def loader(settings):
        loaded.append(settings)
        return AnonymousCredentials()

    async def build(options):
        settings = Settings.load(environ={}, gc_project_id="p", client_options=options)
        channel, endpoint = build_channel(settings, credentials_loader=loader)
        await channel.close()
        return endpoint

    loop = shared_loop()
    assert loop.run(build({"api_endpoint": "localhost:8443"})) == "localhost:8443"
    assert loop.run(build({"api_endpoint": "pubsub.example.com"})) == "pubsub.example.com:443"
    assert loop.run(build({})) == "pubsub.googleapis.com:443"
    assert len(loaded) == 3
