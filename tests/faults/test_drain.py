"""SIGTERM while handlers run: they finish, their messages are acked, the worker exits 0.
And when one outlives ``DRAIN_TIMEOUT``, it is nacked, and comes back at once.

Proof that the acks reached Pub/Sub is the worker's own wire log
(``tests.faults.wire``): on the emulator a message whose ack was lost only
comes back a minute or more later, so a short re-consume alone proves little.
"""

from __future__ import annotations

import pytest

import relay
from tests.conftest import EMULATOR_PROJECT
from tests.faults.helpers import Direct, done_counts, read_records, subscription_for
from tests.faults.wire import wire_counts

pytestmark = pytest.mark.emulator

MESSAGES = 20
#: Each handler sleeps this long, so all of them are running at the SIGTERM.
SLEEP = 2.0
#: A re-consume afterwards, longer than ACK_DEADLINE (10 s).
QUIET = 12.0


def test_sigterm_drains_running_handlers_and_acks_them_before_exit(
    direct: Direct, spawn_worker, records, tmp_path, unique_name
) -> None:
    topic = unique_name("drain")
    direct.provision(topic)
    direct.publish_ids(topic, range(MESSAGES))
    wire = tmp_path / "wire.log"

    worker = spawn_worker(topic, sleep=SLEEP, concurrency=MESSAGES, wire_log=wire)
    worker.wait_until(
        lambda: sum(r.kind == "start" for r in read_records(records)) == MESSAGES,
        timeout=60, what="every handler to start",
    )
    done_at_signal = len(done_counts(read_records(records)))
    worker.terminate()

    assert worker.wait(timeout=60) == 0, worker.output()
    output = worker.output()
    assert done_at_signal < MESSAGES, "the handlers were not running any more at the SIGTERM"
    assert "SIGTERM received: stopping gracefully" in output
    assert "drain timeout" not in output
    assert done_counts(read_records(records)) == {n: 1 for n in range(MESSAGES)}
    assert wire_counts(wire) == {"ack": MESSAGES, "nack": 0}  # every ack reached Pub/Sub
    assert direct.consume(topic, QUIET) == []  # and nothing comes back


#: The drain-timeout test: the handler outlives the drain by far, and the lease
#: is a minute, so only the nack can bring the message back within seconds.
LONG_SLEEP = 20.0
LONG_LEASE = 60
DRAIN = 2.0
#: Seconds the second consumer waits for the nacked message. It took 60 s and
#: more (a full lease) when the emulator still served the stopped worker's stream.
BACK_WITHIN = 15.0


def test_a_drain_timeout_nacks_the_unfinished_message_so_another_consumer_gets_it_at_once(
    pubsub_emulator, spawn_worker, records, tmp_path, unique_name, wait_for
) -> None:
    topic = unique_name("drain-nack")
    wire = tmp_path / "wire.log"
    with Direct(pubsub_emulator.address, EMULATOR_PROJECT, kind=pubsub_emulator.kind,
                ack_deadline=LONG_LEASE) as direct:
        direct.provision(topic)
        direct.publish_ids(topic, [7])
        worker = spawn_worker(
            topic, sleep=LONG_SLEEP, wire_log=wire, ack_deadline=LONG_LEASE, drain_timeout=DRAIN
        )
        worker.wait_until(lambda: read_records(records), timeout=60, what="the handler to start")
        worker.terminate()
        assert worker.wait(timeout=30) == 0, worker.output()
        assert "drain timeout (2.0 s) reached with 1 message(s) unfinished" in worker.output()
        assert wire_counts(wire) == {"ack": 0, "nack": 1}  # the nack reached Pub/Sub

        again: list[int] = []
        second = relay.Worker(
            [subscription_for(topic, lambda data, **attrs: again.append(data["id"]))],
            settings=direct.settings, transport=direct.transport,
        )
        second.start()
        try:
            wait_for(lambda: again == [7], timeout=BACK_WITHIN,
                     what="the nacked message at a second consumer")
        finally:
            second.stop(timeout=10)
    assert [r.kind for r in read_records(records)] == ["start"]  # abandoned, never finished
