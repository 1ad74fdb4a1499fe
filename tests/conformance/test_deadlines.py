"""Ack deadlines and ModifyAckDeadline.

The real service: a message not acked within its ack deadline is delivered
again; ModifyAckDeadline sets a message's deadline to that many seconds from
now (0 to 600; shorter or longer than the subscription's), and a message is
not redelivered while its deadline is extended. google-cloud-pubsub's
streaming pull keeps extending the lease of a message its callback holds, up
to ``FlowControl.max_lease_duration``; after that the subscription's deadline
runs out and the message comes again
(https://cloud.google.com/pubsub/docs/lease-management).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import pubsub_v1

from tests.conformance.helpers import Clients, Inbox

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]


def test_modack_extends_and_shortens_the_deadline(clients: Clients) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)  # ack deadline 10 s
    for data in (b"kept", b"let-go"):
        clients.publish(topic, data)
    got = clients.pull_until(sub, lambda r: len(r) >= 2)
    ack_id = {r.message.data: r.ack_id for r in got}
    assert sorted(ack_id) == [b"kept", b"let-go"]

    def modack(data: bytes, seconds: int) -> None:
        clients.subscriber.modify_ack_deadline(request={
            "subscription": sub, "ack_ids": [ack_id[data]], "ack_deadline_seconds": seconds,
        })

    start = time.monotonic()
    modack(b"kept", 1)
    modack(b"let-go", 1)
    time.sleep(0.4)
    modack(b"kept", 4)  # extended: due about 4.4 s after start
    seen: dict[bytes, float] = {}
    deadline = start + 9.0  # before the subscription's own 10 s could end a lease
    while len(seen) < 2 and time.monotonic() < deadline:
        for r in clients.pull(sub, timeout=1.0):
            seen.setdefault(r.message.data, time.monotonic() - start)
            if r.message.data == b"kept":
                clients.subscriber.acknowledge(request={"subscription": sub,
                                                        "ack_ids": [r.ack_id]})
    assert sorted(seen) == [b"kept", b"let-go"], seen
    assert 0.8 <= seen[b"let-go"] < 3.0, seen  # its 1 s deadline, not the 10 s one
    assert seen[b"kept"] >= 4.0, seen  # not while extended
    assert seen[b"kept"] < 8.0, seen


def test_streaming_pull_redelivers_after_the_ack_deadline_once_the_lease_ends(
    clients: Clients, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)  # ack deadline 10 s, the minimum
    inbox = Inbox()

    def callback(message: Any) -> None:
        inbox.add(message)
        if len(inbox) > 1:
            message.ack()
        # the first delivery is held: neither acked nor nacked

    # The client stops extending a message's lease after 1 s; the server's
    # deadline (10 s from the client's last modack) then runs out.
    clients.stream(sub, callback, flow_control=pubsub_v1.types.FlowControl(max_lease_duration=1))
    clients.publish(topic, b"held")
    wait_for(lambda: len(inbox) >= 2, timeout=25, what="the redelivery after the deadline")
    (t1, first), (t2, second) = inbox.all()[:2]
    assert first.message_id == second.message_id
    assert t2 - t1 >= 9.0, f"redelivered {t2 - t1:.1f} s after the first delivery"
