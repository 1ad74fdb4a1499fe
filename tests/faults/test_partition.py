"""A network partition between a running worker and Pub/Sub: it recovers by itself.

The worker runs in this process and reaches the emulator through ``TcpProxy``
(its ``PUBSUB_EMULATOR_HOST`` is the proxy); the test publishes straight to the
emulator. ``cut()`` closes the worker's connections and refuses new ones for a
few seconds while more messages are published; after ``restore()`` the same
worker, never restarted, must process every message.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

import relay
from tests.conftest import EMULATOR_PROJECT
from tests.faults.helpers import Direct, duplicates, fault_settings, subscription_for
from tests.faults.proxy import TcpProxy

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(180)]

BEFORE, DURING = range(0, 40), range(40, 80)
#: How long the partition lasts: longer than the ack deadline, so messages the
#: emulator handed to the broken stream come back during the cut.
CUT_SECONDS = 10.0
#: Seconds to wait after the restore for every message: generous. On relay's
#: server, what the cut stream held comes back after its lease (ACK_DEADLINE,
#: 10 s) and the first retry backoff (10 s). Google's emulator never notices
#: that the cut ended the worker's stream: it keeps handing that stream messages
#: (which come back ACK_DEADLINE later) until the stream's deadline,
#: STREAM_LIFETIME (15 s in fault_settings there; relay's default is google's
#: 30 min) after it opened. So all are delivered within about 25 s of the cut,
#: or of the restore if later.
RECOVERY_WAIT = 60.0


def _state(worker: relay.Worker) -> str:
    (sub,) = worker.status()["subscriptions"]
    return str(sub["state"])


def test_a_worker_recovers_from_a_partition_without_a_restart(
    direct: Direct, proxy: TcpProxy, unique_name, wait_for, monkeypatch, pubsub_emulator,
    fault_transport: str,
) -> None:
    topic = unique_name("partition")
    direct.provision(topic)
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def handler(data: Any, **attrs: Any) -> None:
        with lock:
            seen[data["id"]] += 1

    def handled() -> set[int]:
        with lock:
            return set(seen)

    # google's client reads PUBSUB_EMULATOR_HOST when the worker builds it.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", proxy.address)
    settings = relay.Settings.load(
        fault_settings(pubsub_emulator.kind, fault_transport), environ={},
        gc_project_id=EMULATOR_PROJECT, middleware=[],
    )
    worker = relay.Worker([subscription_for(topic, handler)], settings=settings)
    worker.start()
    try:
        direct.publish_ids(topic, BEFORE)
        wait_for(lambda: handled() >= set(BEFORE), timeout=30, what="the messages before")
        assert _state(worker) == "open"

        proxy.cut()
        cut_at = time.monotonic()
        direct.publish_ids(topic, DURING)
        # relay sees the outage on the subscriber channel (google's client keeps
        # reconnecting on its own, so the stream itself never fails).
        wait_for(lambda: _state(worker) == "connecting", timeout=CUT_SECONDS,
                 what="the worker to report the outage")
        time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
        assert not handled() & set(DURING), "messages got through the partition"
        during = proxy.stats()
        proxy.restore()
        restored_at = time.monotonic()

        wait_for(lambda: handled() >= set(BEFORE) | set(DURING), timeout=RECOVERY_WAIT,
                 what="every message after the partition")
        recovered_in = time.monotonic() - restored_at
        wait_for(lambda: _state(worker) == "open", timeout=10, what="the stream to be open")
    finally:
        worker.stop(timeout=10)

    after = proxy.stats()
    print(f"\npartition: all processed {recovered_in:.1f} s after the restore; "
          f"duplicates {duplicates(seen)}; proxy {after}")
    assert during.refused > 0  # the worker tried to reconnect during the cut, and could not
    assert after.connections > during.connections  # and reconnected by itself after it
    assert worker.status()["subscriptions"][0]["failures"] == 0  # no stream restart needed
