"""STREAM_LIFETIME: the stream of a killed worker stops taking messages.

The emulator never notices that a streaming pull's connection went away without
the stream being ended (a ``kill -9``, a reset connection): it keeps serving the
stream until its deadline, handing it a share of new messages, which come back
only when their ack deadline passes (with ``delivery_attempt`` 2). A clean stop
ends the stream, and the emulator notices that. With ``STREAM_LIFETIME`` set,
relay gives each stream that deadline and google's client reopens it when it is
reached. It is not set by default (google's own deadline, 30 min, applies):
each reopen on the emulator can leave a few messages to wait out their ack
deadline, so only runs that kill workers (the fault tests) set it.

Here a worker with ``STREAM_LIFETIME=8`` is killed, and a second worker with
relay's default then records each message's delivery attempt: messages
published while the killed worker's stream can still be alive are partly taken
by it (the control: the fault is real), and every message published after that
stream's deadline is delivered to the second worker on its first attempt.

relay's own server (the default emulator) ends a stream when its connection
goes, as Pub/Sub does: there the killed worker's stream takes none of the
early messages either, and the test asserts that instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import relay
from tests.conftest import EMULATOR_PROJECT
from tests.faults.helpers import Direct, read_records, subscription_for

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(120)]

LIFETIME = 8.0
EARLY, LATE = range(0, 30), range(100, 130)
WARM_UP = 1000


def test_a_killed_workers_stream_stops_taking_messages_after_its_lifetime(
    direct: Direct, spawn_worker, records, unique_name, wait_for, pubsub_emulator
) -> None:
    topic = unique_name("lifetime")
    # A retry policy on the subscription makes the emulator count delivery
    # attempts. (Here no message is taken by the dead stream twice, so the
    # emulator's retry-policy fault, docs/reliability.md, cannot bite.)
    policy = relay.RetryPolicy(10, 600)
    attempts: dict[int, list[int | None]] = {}
    arrived: dict[int, float] = {}
    published: dict[int, float] = {}
    lock = threading.Lock()

    def record(data: Any, *, delivery_attempt: int | None = None, **attrs: Any) -> None:
        with lock:
            attempts.setdefault(data["id"], []).append(delivery_attempt)
            arrived.setdefault(data["id"], time.monotonic())

    def delivered() -> set[int]:
        with lock:
            return set(attempts)

    spawned_at = time.monotonic()  # its stream opens after this: it ends after +LIFETIME
    victim = spawn_worker(topic, stream_lifetime=LIFETIME, default_retry_policy="10,600")
    victim.wait_ready()  # it provisioned the subscription
    # A message it handled proves its stream is open on the emulator (READY may
    # come before google's client has opened it); it ends by then +LIFETIME.
    direct.publish_ids(topic, [WARM_UP])
    victim.wait_until(lambda: any(r.ident == WARM_UP for r in read_records(records)),
                      timeout=30, what="the warm-up message")
    streaming_at = time.monotonic()
    victim.kill()

    # relay's default STREAM_LIFETIME (google's 30 min): the survivor's own stream
    # is never reopened here, so no reopen can hand it a late message on attempt 2.
    settings = relay.Settings.load(environ={}, gc_project_id=EMULATOR_PROJECT, middleware=[],
                                   ack_deadline=10, default_retry_policy=policy,
                                   stream_lifetime=0)
    survivor = relay.Worker([subscription_for(topic, record)], settings=settings)
    survivor.start()
    try:
        for n in EARLY:  # while the killed worker's stream is still served
            published[n] = time.monotonic()
            direct.publish_ids(topic, [n])
            time.sleep(0.05)
        assert time.monotonic() - spawned_at < LIFETIME, "the early messages came too late"
        time.sleep(max(0.0, streaming_at + LIFETIME + 1.0 - time.monotonic()))
        direct.publish_ids(topic, LATE)
        wait_for(lambda: delivered() >= set(EARLY) | set(LATE), timeout=60,
                 what="every message, including those the dead stream took")
    finally:
        survivor.stop(timeout=10)

    with lock:
        taken_early = sorted(n for n in EARLY if max(a or 0 for a in attempts[n]) > 1)
        late = {n: attempts[n] for n in LATE}
    print(f"\nstream lifetime: {len(taken_early)} of {len(EARLY)} early messages were taken "
          f"by the killed worker's stream first: {taken_early}")
    if pubsub_emulator.kind == "google":  # its known fault: the dead stream is served
        assert taken_early, "the killed worker's stream took nothing: the test shows no fault"
        assert all(a == [1] for a in late.values()), late
    else:
        # relay's server noticed the connection go, at once: every early message
        # reached the survivor well within one ack deadline (10 s) of its publish.
        # (Without a dead-letter policy it sets no delivery_attempt, as Pub/Sub.)
        slow = {n: round(arrived[n] - published[n], 1) for n in EARLY
                if arrived[n] - published[n] > 5.0}
        assert slow == {}, f"relay's server served a killed worker's stream: {slow}"
        assert all(a == [None] for a in late.values()), late
