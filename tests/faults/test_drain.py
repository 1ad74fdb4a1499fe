"""SIGTERM while handlers run: they finish, their messages are acked, the worker exits 0.

Proof that the acks reached Pub/Sub is the worker's own wire log
(``tests.faults.wire``): on the emulator a message whose ack was lost only
comes back a minute or more later, so a short re-consume alone proves little.
"""

from __future__ import annotations

import pytest

from tests.faults.helpers import Direct, done_counts, read_records
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
