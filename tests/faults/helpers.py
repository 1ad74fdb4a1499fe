"""What the fault tests and ``bench/bench_reliability.py`` share (no pytest here).

* ``WorkerProcess``: ``relay-cli run`` on the app in ``tests/faults/app`` in a
  subprocess, to be killed, signalled and waited for.
* ``read_records``: what that app's handler wrote (``start``/``done`` lines).
* ``Direct``: relay on the emulator for the test's own side (provisioning,
  publishing, a short re-consume), over gRPC channels opened on the emulator's
  address itself, so it never goes through a proxy whatever
  ``PUBSUB_EMULATOR_HOST`` says.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import relay
from relay.cli import READY
from tests.support.processes import LoggedProcess

APP_ROOT = Path(__file__).resolve().parent / "app"
REPO_ROOT = APP_ROOT.parent.parent.parent


class WorkerFailed(AssertionError):
    """The worker process did not do what was expected; the message has its log."""


# -------------------------------------------------------------------- records
@dataclass(frozen=True)
class Record:
    kind: str  # "start" | "done"
    ident: int
    pid: int
    at: float  # time.time() in the worker


def read_records(path: Path) -> list[Record]:
    """Every complete line the app wrote (a line still being written is skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        kind, ident, pid, at = line.split()
        records.append(Record(kind, int(ident), int(pid), float(at)))
    return records


def done_counts(records: Iterable[Record]) -> Counter[int]:
    """How many times each id's handler finished."""
    return Counter(r.ident for r in records if r.kind == "done")


def duplicates(counts: Counter[int]) -> dict[int, int]:
    """``{id: times}`` for every id handled more than once."""
    return {ident: n for ident, n in sorted(counts.items()) if n > 1}


# ------------------------------------------------------------ worker process
def worker_env(
    emulator_host: str, *, kind: str, project: str, topic: str, records: Path,
    transport: str = "pubsub", sleep: float = 0.0, wire_log: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The environment of a ``relay-cli run`` on the faults app.

    The test's own ``RELAY_*`` variables are dropped; ``fault_settings(kind,
    transport)`` and ``settings`` (which win) become ``RELAY_<KEY>`` variables.
    With ``wire_log``, the worker runs on ``tests.faults.wire``'s wire-logged
    version of ``transport``, which logs there the acks and nacks the emulator
    accepted.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        PUBSUB_EMULATOR_HOST=emulator_host,
        RELAY_GC_PROJECT_ID=project,
        GC_PROJECT_ID=project,
        FAULTS_TOPIC=topic,
        FAULTS_RECORDS=str(records),
        FAULTS_SLEEP=str(sleep),
        # Metadata-server probes fail fast on loopback (nothing should probe).
        NO_GCE_CHECK="true",
        GCE_METADATA_HOST="127.0.0.1:1",
        GCE_METADATA_IP="127.0.0.1:1",
    )
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    # relay leases in steps of the ack deadline: what a killed or cut-off stream
    # held comes back after 10 s (google's client alone would use 60 s).
    merged: dict[str, Any] = {**fault_settings(kind, transport), **(settings or {})}
    if wire_log is not None:
        env["FAULTS_WIRE_LOG"] = str(wire_log)
        merged["TRANSPORT"] = (
            "tests.faults.wire.WireLoggedGrpcTransport" if merged["TRANSPORT"] == "grpc"
            else "tests.faults.wire.WireLoggedTransport"
        )
    env.update({f"RELAY_{key.upper()}": str(value) for key, value in merged.items()})
    return env


#: What the fault tests change from relay's defaults, in workers and in ``Direct``.
#: On every server, ACK_DEADLINE 10 (the minimum), so what a killed or cut-off
#: worker held comes back soon. On Google's emulator (``RELAY_EMULATOR=google``)
#: two workarounds for its faults as well (docs/reliability.md, "The emulator"):
#:
#: * no retry policy, because it (0.8.20) strands messages that a retry policy
#:   delays twice or more, which a crash or a partition does to many at once;
#: * STREAM_LIFETIME 15, because it keeps serving a killed or cut-off worker's
#:   stream until the stream's deadline (google's is 30 min, relay's default).
#:   It is not relay's default: on a healthy emulator each reopen can leave a
#:   few messages to wait out their ack deadline (issue 9). ``Direct`` passes
#:   its own clients, so it does not apply there.
#:
#: relay's own server needs neither: there the fault tests run with relay's
#: default retry policy (10 s to 600 s) and google's own stream deadline.
FAULT_SETTINGS: dict[str, Any] = {"ACK_DEADLINE": 10}
GOOGLE_WORKAROUNDS: dict[str, Any] = {"DEFAULT_RETRY_POLICY": "none", "STREAM_LIFETIME": 15}
#: The transports every fault test runs on (the ``fault_transport`` fixture):
#: relay's default, on google's client, and relay's own on the gRPC layer.
TRANSPORTS = ("pubsub", "grpc")


def fault_settings(kind: str, transport: str = "pubsub") -> dict[str, Any]:
    """``FAULT_SETTINGS`` on emulator ``kind`` (``"relay"`` or ``"google"``), on
    ``transport`` (one of ``TRANSPORTS``)."""
    return {
        **FAULT_SETTINGS, "TRANSPORT": transport,
        **(GOOGLE_WORKAROUNDS if kind == "google" else {}),
    }


class WorkerProcess(LoggedProcess):
    """``python -m relay.cli run --root tests/faults/app`` in the background.

    Its stdout and stderr go to ``log``. ``stop()`` (and leaving the ``with``
    block) makes sure it is gone: SIGTERM, then SIGKILL. What fails raises
    ``WorkerFailed``.
    """

    name = "the worker"
    tail = 4000
    grace = 15.0
    poll = 0.02

    def __init__(self, env: dict[str, str], log: Path, *, log_level: str = "INFO") -> None:
        super().__init__(
            [sys.executable, "-m", "relay.cli", "run", "--root", str(APP_ROOT),
             "--log-level", log_level], log, cwd=REPO_ROOT, env=env,
        )

    def fail(self, message: str) -> NoReturn:
        raise WorkerFailed(message)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until it prints the READY line (it is consuming); fails if it exits first."""
        self.wait_until(lambda: READY in self.output(), "the worker to be ready", timeout)

    def kill(self) -> None:
        """``kill -9``: no handler, no drain, no flush."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        return self.finish(timeout)


# ------------------------------------------------------------ the test's side
def subscription_for(topic: str, handler: Callable[..., Any]) -> relay.Subscription:
    """A subscription declared like the app's (named after the topic), on ``handler``."""
    return relay.sub(topic)(handler)


class Direct:
    """relay straight on the emulator: provision, publish, re-consume."""

    def __init__(self, emulator_address: str, project: str, *, kind: str, **settings: Any) -> None:
        """``settings``: relay settings for provisioning (``fault_settings(kind)``
        unless given, as in ``worker_env``), to match the workers' so they change
        nothing."""
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        from relay.transports.pubsub import PubSubTransport

        self.settings = relay.Settings.load(
            fault_settings(kind), environ={}, gc_project_id=project,
            **{"middleware": [], **settings},
        )
        publisher = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.01),
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_address)),
        )
        subscriber = pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_address))
        )
        self.transport = PubSubTransport(
            self.settings, publisher_client=publisher, subscriber_client=subscriber
        )
        self.publisher = relay.Publisher(
            self.transport, settings=self.settings, middleware=relay.MiddlewareChain([])
        )

    def provision(self, topic: str) -> None:
        """The topic and the app's subscription on it, before anything is published."""
        relay.Worker(
            [subscription_for(topic, _ignore)], settings=self.settings, transport=self.transport
        ).setup()

    def publish_ids(self, topic: str, ids: Iterable[int], timeout: float = 120.0) -> None:
        """Publish ``{"id": n}`` for each id and wait until Pub/Sub has every one."""
        futures = [self.publisher.publish(topic, {"id": n}) for n in ids]
        for future in futures:
            future.result(timeout=timeout)

    def consume(self, topic: str, seconds: float) -> list[int]:
        """Ids delivered on the app's subscription within ``seconds`` (acked)."""
        seen: list[int] = []
        lock = threading.Lock()

        def handler(data: Any, **attrs: Any) -> None:
            with lock:
                seen.append(data["id"])

        worker = relay.Worker(
            [subscription_for(topic, handler)], settings=self.settings, transport=self.transport
        )
        worker.start()
        try:
            time.sleep(seconds)
        finally:
            worker.stop(timeout=10)
        return seen

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Direct:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ignore(data: Any, **attrs: Any) -> None:
    return None
