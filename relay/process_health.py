"""The health of ``relay-cli run --processes N``: each worker process, and the whole.

The supervisor (``relay.processes.Supervisor``) keeps one ``WorkerSlot`` per
worker (1..N) across restarts, and one ``WorkerRun`` per process started in it.
Every worker serves its own probes on a free loopback port; ``poll_workers``
reads each one's ``/readyz`` every ``POLL_EVERY`` seconds on a thread of its
own, so a worker that hangs never holds up the supervisor or a probe.

``SupervisorHealth`` serves, on ``HEALTH_PORT``, what ``Supervisor.probe()``
builds from ``worker_status`` and ``answer``:

* ``/readyz``: 200 when provisioning has finished, the supervisor is not
  stopping, and every worker runs and its own ``/readyz`` passed within
  ``STALE_AFTER`` seconds. Each reason names the worker (``worker 2 (pid
  4322): subscription shop-orders is connecting``).
* ``/livez``: 200 while the supervisor keeps its workers up (a worker
  restarting after a crash included): 503 once every worker has stopped, or if
  its loop has not run for ``HEALTH_FAILURE_THRESHOLD`` seconds. A worker that
  fails its own liveness is restarted by the supervisor, not reported here.

The body is the single worker's shape (``probe``, ``ok``, ``reasons``, then the
status) with a ``workers`` list instead of ``subscriptions``; the full shape is
in docs/reliability.md ("Several processes").
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relay.health import HealthServer, read_probe

__all__ = [
    "POLL_EVERY", "STALE_AFTER", "SupervisorHealth", "WorkerRun", "WorkerSlot", "answer",
    "poll_workers", "worker_status",
]

logger = logging.getLogger("relay.processes")

#: How often the supervisor reads each worker's /readyz, and how old an answer may be.
POLL_EVERY = 1.0
STALE_AFTER = 5.0
#: Seconds one read of a worker's probe may take.
READ_TIMEOUT = 2.0
_ANSWER_KEYS = ("probe", "ok", "reasons")


@dataclass(eq=False)
class WorkerRun:
    """One worker process: what the supervisor knows of it."""

    process: subprocess.Popen[bytes]
    started: float
    #: Its probe server (it prints the address on stdout).
    health_url: str | None = None
    #: It printed READY: it has started consuming.
    consuming: bool = False
    #: Its last /readyz answer, and when (time.monotonic()).
    body: dict[str, Any] | None = None
    answered: float = 0.0
    #: When the supervisor kills it; set when it sent SIGTERM.
    kill_at: float | None = None
    #: Why the supervisor stopped it, if it did so to restart it.
    why: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(eq=False)
class WorkerSlot:
    """Worker ``index`` (1..N), across its restarts."""

    index: int
    run: WorkerRun | None = None
    restarts: int = 0
    #: Exits in a row, for the restart backoff.
    failures: int = 0
    restart_at: float | None = None
    last_exit: str | None = None


def poll_workers(slots: Sequence[WorkerSlot], done: threading.Event) -> None:
    """Until ``done``: read every running worker's ``/readyz`` into its ``WorkerRun``."""
    while not done.wait(POLL_EVERY):
        for slot in slots:
            run = slot.run
            if run is None or run.health_url is None or run.process.returncode is not None:
                continue
            try:
                _, body = read_probe(run.health_url, "readyz", timeout=READ_TIMEOUT)
            except Exception as exc:  # silence shows as a stale answer
                logger.debug("reading worker %d's probe failed: %s", slot.index, exc)
                continue
            run.body, run.answered = body, time.monotonic()


def worker_status(slot: WorkerSlot, now: float) -> dict[str, Any]:
    """One entry of ``workers``: the process, its state, why it is not ready, its status."""
    run, name = slot.run, f"worker {slot.index}"
    entry: dict[str, Any] = {
        "index": slot.index, "pid": None, "state": "idle", "restarts": slot.restarts,
        "last_exit": slot.last_exit, "uptime": None, "status": None,
    }
    if run is None:
        if slot.restart_at is not None:
            entry["state"] = "restarting"
            reasons = [f"{name} {slot.last_exit}; restarting it in "
                       f"{max(0.0, slot.restart_at - now):.1f} s"]
        elif slot.last_exit is not None:
            entry["state"] = "stopped"
            reasons = [f"{name} {slot.last_exit}"]
        else:
            reasons = [f"{name} has not started"]
    else:
        body = run.body
        name = f"{name} (pid {run.pid})"
        entry.update(pid=run.pid, uptime=round(now - run.started, 1),
                     state="running" if run.consuming else "starting")
        if body is not None:
            entry["status"] = {k: v for k, v in body.items() if k not in _ANSWER_KEYS}
        if run.kill_at is not None:
            entry["state"] = "stopping"
            reasons = [f"{name} is stopping" + (f" ({run.why})" if run.why else "")]
        elif body is None:
            reasons = [f"{name} has not answered its probe yet"]
        elif now - run.answered > STALE_AFTER:
            reasons = [f"{name} has not answered its probe for {now - run.answered:.0f} s"]
        else:
            reasons = [f"{name}: {reason}" for reason in body.get("reasons", ())]
    entry["ready"], entry["reasons"] = not reasons, reasons
    return entry


def answer(probe: str, status: Mapping[str, Any], *, not_live: str | None) -> dict[str, Any]:
    """The body of the supervisor's ``/livez`` or ``/readyz`` for ``status``.

    ``not_live``: why the supervisor itself is not live (None: it is).
    """
    reasons: list[str] = []
    if probe == "livez":
        if not_live:
            reasons.append(not_live)
    elif probe == "readyz":
        if status["stopping"]:
            reasons.append("the supervisor is stopping")
        elif not status["provisioned"]:
            reasons.append("provisioning has not finished")
        for worker in status["workers"]:
            reasons.extend(worker["reasons"])
    else:
        raise ValueError(f"unknown probe {probe!r}; expected 'livez' or 'readyz'")
    return {"probe": probe, "ok": not reasons, "reasons": reasons, **status}


class ProbeSource(Protocol):
    """What ``SupervisorHealth`` serves: ``relay.processes.Supervisor``."""

    def status(self) -> dict[str, Any]: ...

    def probe(self, probe: str) -> dict[str, Any]: ...


class SupervisorHealth(HealthServer):
    """``/livez`` and ``/readyz`` of a supervisor: its own and every worker's."""

    def __init__(self, supervisor: ProbeSource, **options: Any) -> None:
        super().__init__(supervisor, **options)
        self.supervisor = supervisor

    def check(self, probe: str) -> dict[str, Any]:
        return self.supervisor.probe(probe)
