"""The app ``tests/processes`` runs under ``relay-cli run --processes N``.

One sync handler on the topic named by ``PROCESSES_TOPIC``. For a message
``{"id": N, "sleep": S}`` it appends ``start N PID`` to the file named by
``PROCESSES_RECORDS``, sleeps S seconds (default 0), then appends ``done N
PID``; each line is one ``os.write`` on an ``O_APPEND`` descriptor, so the
lines of concurrent handlers and processes never interleave.

With ``PROCESSES_FAIL_IN_WORKERS`` set, importing this module fails in a
worker process (one started with ``--worker-index``), not in the supervisor:
a configuration error that only the workers hit.
"""

from __future__ import annotations

import os
import sys
import time

from relay import sub

if os.environ.get("PROCESSES_FAIL_IN_WORKERS") and "--worker-index" in sys.argv:
    raise RuntimeError("this module cannot be imported in a worker process (test)")

TOPIC = os.environ["PROCESSES_TOPIC"]
_RECORDS = os.open(
    os.environ["PROCESSES_RECORDS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
)


def _record(kind: str, ident: object) -> None:
    os.write(_RECORDS, f"{kind} {ident} {os.getpid()}\n".encode())


@sub(TOPIC)
def handle(data, **attrs):
    _record("start", data["id"])
    time.sleep(data.get("sleep", 0))
    _record("done", data["id"])
