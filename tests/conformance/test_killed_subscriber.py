"""A subscriber killed with SIGKILL.

The real service ends a streaming pull when its client's connection goes, so
messages published afterwards reach the live subscribers at once. (Google's
emulator keeps serving the dead stream: docs/reliability.md, "The emulator".)

The victim is a separate process running google-cloud-pubsub's streaming pull;
it proves its stream is open by printing a message it received, then is
killed. A live subscriber in this process then opens its own stream and must
get every message published after the kill promptly, not an ack deadline
(10 s) later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.helpers import Clients, Inbox, known_difference

pytestmark = [pytest.mark.emulator, pytest.mark.conformance]

VICTIM = """
import sys
from google.cloud import pubsub_v1

def callback(message):
    print(message.data.decode(), flush=True)
    message.ack()

subscriber = pubsub_v1.SubscriberClient()
subscriber.subscribe(sys.argv[1], callback).result()
"""
PROMPTLY = 4.0
COUNT = 20


def test_messages_published_after_a_subscriber_is_killed_reach_a_live_one_promptly(
    clients: Clients, wait_for: Callable[..., Any]
) -> None:
    topic = clients.topic()
    sub = clients.subscription(topic)  # ack deadline 10 s
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, sub], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=dict(os.environ))
    lines: list[str] = []

    def read() -> None:
        assert victim.stdout is not None
        lines.extend(line.strip() for line in victim.stdout)

    threading.Thread(target=read, daemon=True).start()
    try:
        clients.publish(topic, b"warm-up")
        wait_for(lambda: "warm-up" in lines, timeout=30, what="the victim's warm-up message")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    time.sleep(0.5)  # the server's side of the dead connection closes

    inbox = Inbox()

    def callback(message: Any) -> None:
        inbox.add(message)
        message.ack()

    clients.stream(sub, callback)
    published_at = time.monotonic()
    for n in range(COUNT):
        clients.publish(topic, str(n).encode())
    expected = {str(n).encode() for n in range(COUNT)}

    def got() -> set[bytes]:
        return set(inbox.data()) & expected

    if known_difference(clients.server, "google", "killed-subscriber"):
        time.sleep(PROMPTLY)
        assert len(got()) < COUNT, "the dead stream took none: has Google fixed it?"
        return
    wait_for(lambda: got() == expected, timeout=PROMPTLY,
             what=f"all {COUNT} messages (got {sorted(got())})")
    assert time.monotonic() - published_at < PROMPTLY
