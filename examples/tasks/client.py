"""The client side: enqueue reports, then poll until each one is done.

    python client.py [REPORTS]        # from this directory, with the worker running
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from subs import render_report

import relay
from relay import TaskFailed


def main(reports: int = 3, *, poll: float = 0.25, timeout: float = 60.0) -> list[Any]:
    """Enqueue ``reports`` reports (the last one invalid), poll, return the outcomes."""
    handles = [render_report.delay(n, pages=2) for n in range(1, reports)]
    handles.append(render_report.delay(reports, pages=0))  # fails: no pages
    print(f"enqueued {len(handles)} report(s): {', '.join(h.id[:8] for h in handles)}",
          flush=True)
    deadline = time.monotonic() + timeout
    last: list[str] = []
    while True:
        statuses = [h.status().value for h in handles]
        if statuses != last:  # print each change, as a web page would show it
            print("status: " + ", ".join(statuses), flush=True)
            last = statuses
        if all(h.ready() for h in handles) or time.monotonic() > deadline:
            break
        time.sleep(poll)
    outcomes: list[Any] = []
    for handle in handles:
        try:
            outcomes.append(handle.result(timeout=0))
        except TaskFailed as failure:
            outcomes.append(f"failed: {failure.type}: {failure.message}")
        except TimeoutError:
            outcomes.append("not done in time")
        print(f"{handle.id[:8]}: {outcomes[-1]}", flush=True)
    return outcomes


if __name__ == "__main__":
    settings = relay.Settings.from_module("settings")
    if os.environ.get("PUBSUB_EMULATOR_HOST") is None:
        sys.exit("export PUBSUB_EMULATOR_HOST=... first (relay-cli run --emulator prints it)")
    relay.configure(settings)
    try:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    finally:
        relay.reset()  # deletes this client's reply subscription
