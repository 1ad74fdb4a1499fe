"""The Worker end to end on ``PubSubTransport`` (``TRANSPORT="pubsub"``, google's
client, kept selectable for at least one release): the emulator Worker tests of
``tests/emulator/test_worker_emulator.py``, run again with a harness on it (their own
harness is built on the default, relay's gRPC transport)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.emulator import test_worker_emulator as _worker
from tests.emulator.conftest import (  # noqa: F401
    Harness,
    Recorder,
    admin,
    harnesses,
    recorder,
)

_SHARED = [
    "test_sync_handler_runs_on_the_worker_pool_and_its_message_is_acked",
    "test_async_handler_runs_on_the_worker_loop_and_its_message_is_acked",
    "test_filter_by_skips_and_acks_without_calling_the_handler",
    "test_attributes_round_trip_with_published_at_and_ordering_key",
    "test_a_handler_exception_leads_to_redelivery",
    "test_a_payload_that_is_not_json_is_acked_and_reported",
    "test_middleware_that_raises_does_not_stop_processing",
    "test_graceful_stop_finishes_in_flight_handlers_and_acks_them",
    "test_a_failed_stream_is_seen_and_restarted_by_the_supervisor",
]
for _name in _SHARED:
    globals()[_name] = getattr(_worker, _name)


@pytest.fixture
def make_harness(
    make_pubsub_transport: Callable[..., Any], recorder: Recorder  # noqa: F811
) -> Iterator[Callable[..., Harness]]:
    yield from harnesses(make_pubsub_transport, recorder)


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
