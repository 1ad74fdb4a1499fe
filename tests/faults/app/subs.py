"""The worker app the fault tests and ``bench/bench_reliability.py`` run under
``relay-cli run --root tests/faults/app``.

One sync handler on the topic named by ``FAULTS_TOPIC``. For every message
(JSON ``{"id": N}``) it appends ``start N PID TIME`` to the file named by
``FAULTS_RECORDS``, sleeps ``FAULTS_SLEEP`` seconds (default 0), then appends
``done N PID TIME``. Each line is one ``os.write`` on an ``O_APPEND``
descriptor, so lines from many threads and from successive worker processes
never interleave, and a line is in the file (the page cache) once the write
returns: a ``kill -9`` right after it cannot lose it. A ``done`` line is written
before the handler returns, so before relay acks the message: every acked
message has its ``done`` line.
"""

from __future__ import annotations

import os
import time

from relay import sub

TOPIC = os.environ["FAULTS_TOPIC"]
SLEEP = float(os.environ.get("FAULTS_SLEEP", "0"))
_RECORDS = os.open(os.environ["FAULTS_RECORDS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_PID = os.getpid()


def _record(kind: str, ident: object) -> None:
    os.write(_RECORDS, f"{kind} {ident} {_PID} {time.time():.6f}\n".encode())


@sub(TOPIC)
def handle(data, **attrs):
    _record("start", data["id"])
    if SLEEP:
        time.sleep(SLEEP)
    _record("done", data["id"])
