"""The ``transport`` fixture: every contract test runs on memory, on the emulator
through google's client (``pubsub``) and through relay's own gRPC transport (``grpc``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from relay.transports.base import Transport
from relay.transports.memory import MemoryTransport

_ACKS = pytest.StashKey[Callable[[str], int]]()


@pytest.fixture(params=["memory", "pubsub", "grpc"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    built: Any
    if request.param == "memory":
        built = MemoryTransport()
        request.node.stash[_ACKS] = lambda sub: built.stats(sub)["acked"]
    elif request.param == "grpc":
        built, wire = request.getfixturevalue("make_grpc_transport")()
        request.node.stash[_ACKS] = wire.acks
    else:
        built, wire = request.getfixturevalue("make_pubsub_transport")()
        request.node.stash[_ACKS] = wire.acks
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def broker_acks(transport: Transport, request: pytest.FixtureRequest) -> Callable[[str], int]:
    """``broker_acks(subscription)``: how many acks the broker itself received."""
    return request.node.stash[_ACKS]
