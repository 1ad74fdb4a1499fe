"""``relay-cli run --processes N`` as real processes, on relay's own Pub/Sub server.

Each test starts a supervisor with two worker processes on the app in ``app/``
and checks what an operator relies on: both consume, one ``/readyz`` reports
each, a ``kill -9``ed worker comes back, SIGTERM drains every one, and a
configuration error stops everything instead of restarting forever.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

from relay.emulator import Emulator, free_port
from relay.health import read_probe
from tests.processes.helpers import Supervised, done, env_for, publish, records


def _started(path: Path, since: int) -> set[int]:
    return {ident for kind, ident, _ in records(path) if kind == "start" and ident >= since}


def test_two_workers_share_the_work_report_on_one_readyz_and_drain_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    log, recs = tmp_path / "supervisor.log", tmp_path / "records.txt"
    env = env_for("orders", recs)
    env.pop("PUBSUB_EMULATOR_HOST", None)  # --emulator: the supervisor starts it, once

    with Supervised(log, env, "--processes", "2", "--emulator", "--emulator-port", str(port),
                    "--health-port", "0") as supervisor:
        url = supervisor.health_url()
        answers: list[tuple[int, dict[str, Any]]] = []

        def ready() -> bool:
            answers.append(read_probe(url, "readyz", timeout=5))
            return answers[-1][0] == 200

        supervisor.wait_until(ready, "/readyz to answer 200")
        supervisor.wait_ready()

        # Not ready until both are, and every answer reports each worker.
        assert answers[0][0] == 503
        for _, body in answers:
            assert [w["index"] for w in body["workers"]] == [1, 2]
        assert any(r.startswith("worker ") for _, body in answers[:-1] for r in body["reasons"])
        body = answers[-1][1]
        pids = [w["pid"] for w in body["workers"]]
        assert len(set(pids)) == 2 and supervisor.process.pid not in pids
        for worker in body["workers"]:
            assert worker["ready"] and worker["state"] == "running" and worker["restarts"] == 0
            assert [s["state"] for s in worker["status"]["subscriptions"]] == ["open"]
        assert body["processes"] == 2 and body["provisioned"] and body["reasons"] == []
        assert sum(1 for line in supervisor.output().splitlines() if "worker running" in line) == 1

        # Both consume: two messages in flight per stream, so both get some.
        publish(address, "orders", [{"id": n, "sleep": 0.2} for n in range(16)])
        handled = supervisor.wait_until(lambda: len(done(recs)) == 16 and done(recs),
                                        "16 messages handled")
        assert set(handled.values()) == set(pids)

        # SIGTERM with four slow handlers running (two per worker): all finish.
        publish(address, "orders", [{"id": 100 + n, "sleep": 1.5} for n in range(4)])
        supervisor.wait_until(lambda: len(_started(recs, 100)) == 4, "4 slow handlers")
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.finish() == 0, supervisor.output()

    late = {ident: pid for ident, pid in done(recs).items() if ident >= 100}
    assert sorted(late) == [100, 101, 102, 103]
    assert set(late.values()) == set(pids)
    output = log.read_text()
    for index, pid in enumerate(pids, start=1):
        assert f"[worker {index} pid {pid}] relay.worker: worker consuming" in output
        assert f"worker {index} (pid {pid}) stopped" in output
    assert output.count("started the Pub/Sub emulator") == 1


def test_a_worker_killed_with_sigkill_is_restarted_and_messages_are_still_processed(
    pubsub_emulator: Emulator, tmp_path: Path,
) -> None:
    topic = f"orders-{uuid.uuid4().hex[:10]}"
    log, recs = tmp_path / "supervisor.log", tmp_path / "records.txt"
    with Supervised(log, env_for(topic, recs), "--processes", "2",
                    "--health-port", "0") as supervisor:
        supervisor.wait_ready()
        _, body = supervisor.wait_until(
            lambda: (answer := supervisor.readyz())[0] == 200 and answer, "/readyz 200"
        )
        first = [w["pid"] for w in body["workers"]]

        os.kill(first[0], signal.SIGKILL)
        seen: list[dict[str, Any]] = []

        def restarted() -> dict[str, Any] | None:
            code, body = supervisor.readyz()
            seen.append(body)
            worker = body["workers"][0]
            ok = code == 200 and worker["restarts"] == 1 and worker["pid"] != first[0]
            return body if ok else None

        body = supervisor.wait_until(restarted, "worker 1 restarted and ready", timeout=40)
        assert any(r.startswith("worker 1") for b in seen for r in b["reasons"])
        assert body["workers"][0]["last_exit"] == "was killed by SIGKILL"
        assert body["workers"][1]["pid"] == first[1] and body["workers"][1]["restarts"] == 0

        publish(pubsub_emulator.address, topic, [{"id": n} for n in range(10)])
        supervisor.wait_until(lambda: len(done(recs)) == 10, "every message handled")
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.finish() == 0, supervisor.output()

    output = log.read_text()
    assert f"worker 1 (pid {first[0]}) was killed by SIGKILL after" in output
    assert "restarting it in 1.0 s" in output


def test_a_worker_failing_with_a_configuration_error_stops_everything_without_looping(
    tmp_path: Path,
) -> None:
    env = env_for("orders", tmp_path / "records.txt", RELAY_TRANSPORT="memory",
                  PROCESSES_FAIL_IN_WORKERS="1")
    env.pop("PUBSUB_EMULATOR_HOST", None)
    with Supervised(tmp_path / "supervisor.log", env, "--processes", "2") as supervisor:
        code = supervisor.finish(timeout=60)
        output = supervisor.output()

    assert code == 2, output
    assert "a configuration error (its error line is above), which restarting cannot fix" in output
    assert output.count("started worker") == 2  # never restarted
    assert "relay-cli [worker 1 pid " in output or "relay-cli [worker 2 pid " in output
    assert "cannot be imported in a worker process" in output


def test_processes_1_runs_the_worker_in_the_process_itself(tmp_path: Path) -> None:
    recs = tmp_path / "records.txt"
    env = env_for("orders", recs, RELAY_TRANSPORT="memory")
    env.pop("PUBSUB_EMULATOR_HOST", None)
    with Supervised(tmp_path / "worker.log", env, "--processes", "1") as worker:
        worker.wait_ready()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.finish() == 0

    output = worker.output()
    assert "relay.processes" not in output and "[worker" not in output
    assert "worker consuming 1 subscription(s)" in output
