"""Fixtures for the fault tests: crash, drain and partition, on the real emulator.

The emulator itself, ``unique_name`` and ``wait_for`` come from
``tests/conftest.py``; the pieces the benchmark shares (the worker process, the
records its handler writes, the proxy, ``Direct``) from ``helpers.py`` and
``proxy.py``. Every worker process and proxy a test starts is stopped after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.emulator import Emulator
from tests.conftest import EMULATOR_PROJECT
from tests.faults.helpers import TRANSPORTS, Direct, WorkerProcess, worker_env
from tests.faults.proxy import TcpProxy


@pytest.fixture
def direct(pubsub_emulator: Emulator) -> Iterator[Direct]:
    """Provision and publish straight to the emulator (never through a proxy)."""
    with Direct(pubsub_emulator.address, EMULATOR_PROJECT, kind=pubsub_emulator.kind) as made:
        yield made


@pytest.fixture(params=TRANSPORTS)
def fault_transport(request: pytest.FixtureRequest) -> str:
    """The transport the test's workers run on: each fault test runs on each."""
    return str(request.param)


@pytest.fixture
def make_transport(
    fault_transport: str, request: pytest.FixtureRequest
) -> Callable[..., tuple[Any, Any]]:
    """``make_pubsub_transport`` or ``make_grpc_transport``, as ``fault_transport`` says."""
    return request.getfixturevalue(f"make_{fault_transport}_transport")  # type: ignore[no-any-return]


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """The file the worker app's handler appends its ``start``/``done`` lines to."""
    return tmp_path / "records.txt"


@pytest.fixture
def spawn_worker(
    pubsub_emulator: Emulator, records: Path, tmp_path: Path, fault_transport: str
) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn_worker(topic, sleep=0, wire_log=None, **settings)``: ``relay-cli run``
    on the faults app (see ``helpers.worker_env``), on ``fault_transport``.

    ``settings`` become ``RELAY_*`` variables, over ``helpers.fault_settings`` for
    the emulator's kind.
    Each process logs to its own file in ``tmp_path``.
    """
    spawned: list[WorkerProcess] = []

    def spawn(
        topic: str, *, sleep: float = 0.0, wire_log: Path | None = None, **settings: Any
    ) -> WorkerProcess:
        env = worker_env(
            pubsub_emulator.address, kind=pubsub_emulator.kind, project=EMULATOR_PROJECT,
            topic=topic, records=records, transport=fault_transport,
            sleep=sleep, wire_log=wire_log, settings=settings,
        )
        worker = WorkerProcess(env, tmp_path / f"worker-{len(spawned)}.log")
        spawned.append(worker)
        return worker

    yield spawn
    for worker in spawned:
        worker.stop()


@pytest.fixture
def proxy(pubsub_emulator: Emulator) -> Iterator[TcpProxy]:
    """A ``TcpProxy`` in front of the emulator."""
    with TcpProxy(pubsub_emulator.address) as started:
        yield started
