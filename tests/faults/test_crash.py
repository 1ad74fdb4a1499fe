"""``kill -9`` of a worker mid-way: every message is still processed at least once.

Two ``relay-cli run`` workers share one subscription; the one started second is
killed with SIGKILL once a third of the messages are done. A killed worker acks
nothing more: what it held (running, queued, leased) comes back once its lease
lapses and the survivor processes it, so nothing is lost, and what it handled
but had not acked yet is handled again (duplicates are expected and printed).

Why the survivor starts first: the emulator (0.8.20) never forgets a streaming
pull that has ended, even by a clean stop, and keeps handing it messages, which
come back only when that dead stream's ack deadline passes, and may be handed
to it again. Measured: with the dead stream opened before the live one, the
live worker was starved past the wait in 5 of 8 runs; opened after it, in 2 of
10. So on that emulator this test can time out without relay losing anything.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.helpers import Direct, done_counts, duplicates, read_records

# Quarantined (not in the default run; `./scripts/test.sh -m quarantine` runs it):
# the emulator (0.8.20) never drops a streaming pull that has ended and keeps
# handing it messages, sometimes over and over, so this fails intermittently on
# the emulator however relay behaves. Measured after the lease fix: crash 3 of 4
# runs passed, partition 1 of 4. See docs/reliability.md, "Fault tests".
pytestmark = [pytest.mark.emulator, pytest.mark.quarantine, pytest.mark.timeout(180)]

MESSAGES = 200
#: Handler time: slow enough that the kill lands mid-way, fast enough for CI.
SLEEP = 0.02
#: Seconds to wait for every message after the kill: generous. The killed
#: worker's leases lapse after ACK_DEADLINE (10 s); all were done about 10 s after
#: the kill (measured).
REDELIVERY_WAIT = 90.0


def test_after_a_kill_9_every_message_is_processed_at_least_once(
    direct: Direct, spawn_worker, records, unique_name
) -> None:
    topic = unique_name("crash")
    direct.provision(topic)
    survivor = spawn_worker(topic, sleep=SLEEP, concurrency=4)
    survivor.wait_ready()
    victim = spawn_worker(topic, sleep=SLEEP, concurrency=4)
    victim.wait_ready()

    def handled_by(pid: int) -> int:
        return sum(r.kind == "done" and r.pid == pid for r in read_records(records))

    direct.publish_ids(topic, range(MESSAGES))
    victim.wait_until(
        lambda: len(done_counts(read_records(records))) >= MESSAGES // 3
        and handled_by(victim.pid) > 0,
        timeout=60, what="a third of the messages, some by the worker to kill",
    )
    victim.kill()
    killed_at = time.monotonic()
    at_kill = len(done_counts(read_records(records)))
    assert at_kill < MESSAGES, "every message was done before the kill"

    survivor.wait_until(lambda: len(done_counts(read_records(records))) == MESSAGES,
                        timeout=REDELIVERY_WAIT, what="every message")
    recovered_in = time.monotonic() - killed_at
    survivor.terminate()
    assert survivor.wait() == 0, survivor.output()

    counts = done_counts(read_records(records))
    dups = duplicates(counts)
    print(f"\ncrash: {at_kill} of {MESSAGES} handled at the kill -9 ({handled_by(victim.pid)} "
          f"by the killed worker), all {recovered_in:.1f} s after it; "
          f"{len(dups)} handled twice or more: {dups}")
    assert set(counts) == set(range(MESSAGES))  # none lost
