"""Reliability figures on the Pub/Sub emulator: crash, partition, drain, publish memory.

    uv run python bench/bench_reliability.py [--messages 10000] [--cut 10] [--inflight 200]
                                             [--publish 200000] [--baseline] [--no-write]

The scenarios of ``tests/faults`` at larger sizes, timed. It starts Google's
Pub/Sub emulator on a free loopback port (``relay.emulator``) and runs:

* **crash**: ``--messages`` messages drained by two ``relay-cli run`` workers on
  the faults app (``tests/faults/app``); the one started second is ``kill -9``'d
  once a third are done and the other finishes. Messages lost (must be 0),
  duplicated, and the time from the kill to the last message.
* **partition**: a ``relay.Worker`` in this process reaches the emulator through
  ``tests.faults.proxy.TcpProxy``; ``--partition-messages`` (200), then a cut of
  ``--cut`` seconds while as many more are published straight to the emulator,
  then the restore. Time
  from the restore to the first message handled after it, and to the last.
* **drain**: ``--inflight`` messages, a worker with that much concurrency whose
  handler sleeps ``--sleep`` seconds; SIGTERM once every handler has started.
  Time from the SIGTERM to the process exit, handlers finished, acks the
  emulator accepted (``tests.faults.wire``), exit code.
* **publish memory**: a process publishing ``--publish`` messages to a loopback
  port where nothing listens, with ``PUBLISHER_MAX_MESSAGES=1000``,
  ``PUBLISHER_LIMIT_BEHAVIOR=error`` and ``PUBLISHER_RETRY_TIMEOUT=2``; its peak
  RSS: ``VmHWM`` from ``/proc/self/status``, and ``ru_maxrss``, which on Linux
  also counts the parent's pages at fork (the high-water mark survives exec),
  so it is only an upper bound. ``--baseline`` adds the same run with the limit
  lifted.

Prints the figures and writes them into ``docs/reliability.md`` between the
``bench_reliability`` markers (the rest of that page is left alone). The
worker app, the process launcher, the proxy and the wire log are the fault
tests' own (``tests/faults``), so the tests and these figures exercise the same
code. Figures, never a pass/fail on time; the exit code is 1 if a message was
lost or a scenario failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from _common import guard_environment  # noqa: E402

from tests.faults.helpers import (  # noqa: E402
    Direct,
    WorkerProcess,
    done_counts,
    duplicates,
    read_records,
    subscription_for,
    worker_env,
)
from tests.faults.proxy import TcpProxy  # noqa: E402
from tests.faults.wire import wire_counts  # noqa: E402

PROJECT = "relay-bench"
DOC = ROOT / "docs" / "reliability.md"
START = "<!-- bench_reliability:start -->"
END = "<!-- bench_reliability:end -->"


def count_done(path: Path) -> int:
    """``done`` lines so far (cheap: no parsing, for polling a large file)."""
    try:
        return path.read_bytes().count(b"done ")
    except FileNotFoundError:
        return 0


def wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# ------------------------------------------------------------------ scenarios
def crash(address: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Two workers; the one started second is killed once a third are done (the
    survivor starts first for the reason in ``tests/faults/test_crash.py``)."""
    n = args.messages
    topic = "reliability-crash"
    records = work / "crash.records"
    with Direct(address, PROJECT) as direct:
        direct.provision(topic)
        env = worker_env(address, project=PROJECT, topic=topic, records=records)
        with WorkerProcess(env, work / "crash-survivor.log", log_level="WARNING") as survivor:
            survivor.wait_ready()
            with WorkerProcess(env, work / "crash-killed.log", log_level="WARNING") as victim:
                victim.wait_ready()
                direct.publish_ids(topic, range(n))
                if not wait(lambda: count_done(records) >= n // 3, args.timeout):
                    return {"error": f"a third was not handled: {victim.output()[-500:]}"}
                victim.kill()
            killed = time.monotonic()
            at_kill = len(done_counts(read_records(records)))
            by_victim = sum(r.kind == "done" and r.pid == victim.pid
                            for r in read_records(records))

            def all_done() -> bool:
                return count_done(records) >= n and len(done_counts(read_records(records))) >= n

            finished = wait(all_done, args.timeout, interval=0.5)
            all_s = time.monotonic() - killed if finished else None
            survivor.terminate()
            exit_code = survivor.wait(120)
    counts = done_counts(read_records(records))
    dups = duplicates(counts)
    return {
        "messages": n, "done_at_kill": at_kill, "done_by_killed": by_victim,
        "lost": n - len(set(counts) & set(range(n))), "duplicated": len(dups),
        "extra_deliveries": sum(v - 1 for v in dups.values()), "all_after_kill_s": all_s,
        "survivor_exit": exit_code, "timeout_s": args.timeout,
    }


def partition(address: str, args: argparse.Namespace) -> dict[str, Any]:
    import relay

    topic = "reliability-partition"
    k = args.partition_messages
    before, during = range(0, k), range(k, 2 * k)
    handled: dict[int, float] = {}
    lock = threading.Lock()

    def handler(data: Any, **attrs: Any) -> None:
        with lock:
            handled.setdefault(data["id"], time.monotonic())

    def count(ids: range) -> int:
        with lock:
            return len(set(ids) & set(handled))

    with Direct(address, PROJECT) as direct, TcpProxy(address) as proxy:
        direct.provision(topic)
        saved = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = proxy.address  # read when the worker's client is built
        settings = relay.Settings.load(environ={}, gc_project_id=PROJECT, middleware=[],
                                       ack_deadline=10)
        worker = relay.Worker([subscription_for(topic, handler)], settings=settings)
        try:
            worker.start()
            direct.publish_ids(topic, before)
            if not wait(lambda: count(before) == len(before), 60):
                return {"error": "the messages before the cut were not handled"}
            proxy.cut()
            cut_at = time.monotonic()
            direct.publish_ids(topic, during)
            time.sleep(max(0.0, args.cut - (time.monotonic() - cut_at)))
            state = worker.status()["subscriptions"][0]["state"]
            leaked = count(during)
            proxy.restore()
            restored = time.monotonic()
            wait(lambda: count(during) == len(during), args.timeout)
        finally:
            worker.stop(timeout=10)
            if saved is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = saved
        with lock:
            after = sorted(handled[i] - restored for i in during if i in handled)
        return {
            "cut_s": args.cut, "published_during": len(during), "handled_during_cut": leaked,
            "state_during_cut": state, "lost": len(during) - len(after),
            "first_after_restore_s": after[0] if after else None,
            "all_after_restore_s": after[-1] if len(after) == len(during) else None,
            "proxy": proxy.stats().__dict__, "timeout_s": args.timeout,
        }


def drain(address: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = args.inflight
    topic = "reliability-drain"
    records, wire = work / "drain.records", work / "drain.wire"
    with Direct(address, PROJECT) as direct:
        direct.provision(topic)
        direct.publish_ids(topic, range(n))
    env = worker_env(
        address, project=PROJECT, topic=topic, records=records, sleep=args.sleep, wire_log=wire,
        settings={"CONCURRENCY": n, "FLOW_MAX_MESSAGES": n, "DRAIN_TIMEOUT": 60},
    )
    with WorkerProcess(env, work / "drain.log", log_level="WARNING") as worker:
        started = lambda: sum(r.kind == "start" for r in read_records(records)) >= n  # noqa: E731
        if not wait(started, 120, interval=0.02):
            return {"error": f"not every handler started: {worker.output()[-500:]}"}
        done_before = len(done_counts(read_records(records)))
        signalled = time.monotonic()
        worker.terminate()
        code = worker.wait(120)
        drain_s = time.monotonic() - signalled
        output = worker.output()
    return {
        "inflight": n, "sleep_s": args.sleep, "done_before_sigterm": done_before,
        "sigterm_to_exit_s": drain_s, "exit_code": code,
        "done": len(done_counts(read_records(records))),
        "acks_on_wire": wire_counts(wire)["ack"], "nacks_on_wire": wire_counts(wire)["nack"],
        "drain_timeout_logged": "drain timeout" in output,
    }


PUBLISHER = """
import json, resource, sys, threading, time
from collections import Counter
import relay

def hwm_kb():
    # Peak RSS of this program alone. ru_maxrss below also counts the parent's
    # pages at fork: Linux carries the high-water mark across exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1

n = int(sys.argv[1])
base = hwm_kb()
lock = threading.Lock()
futures = Counter()
raised = Counter()
def settled(future):
    with lock:
        futures["failed" if future.exception() else "confirmed"] += 1
relay.configure()
t0 = time.monotonic()
for i in range(n):
    try:
        relay.publish("unreachable", {"id": i}).add_done_callback(settled)
    except Exception as exc:
        raised[type(exc).__name__] += 1
publish_s = time.monotonic() - t0
relay.reset()
with lock:
    settled_futures = dict(futures)
print(json.dumps({"messages": n, "publish_loop_s": publish_s, "raised": dict(raised),
                  "futures": settled_futures, "hwm_after_import_kb": base,
                  "hwm_kb": hwm_kb(),
                  "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def publish_memory(args: argparse.Namespace, limited: bool) -> dict[str, Any]:
    from relay.emulator import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        PUBSUB_EMULATOR_HOST=f"127.0.0.1:{free_port()}",  # nothing listens there
        RELAY_GC_PROJECT_ID=PROJECT, RELAY_MIDDLEWARE="", RELAY_PUBLISHER_RETRY_TIMEOUT="2",
        RELAY_PUBLISHER_LIMIT_BEHAVIOR="error",
        RELAY_PUBLISHER_MAX_MESSAGES="1000" if limited else "10000000",
        RELAY_PUBLISHER_MAX_BYTES=str(100 * 1024 * 1024 if limited else 100 * 1024**3),
    )
    guard_environment(env)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PUBLISHER, str(args.publish)], env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=args.timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {args.timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["limited"] = limited
    return result


# -------------------------------------------------------------------- output
def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MB"


def render(results: dict[str, dict[str, Any]], command: str, started: dt.datetime) -> str:
    lines = [
        "Produced by one command (it rewrites only this section):",
        "",
        "```", command, "```", "",
        f"* Run: {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Linux "
        f"{platform.release()}, Python {platform.python_version()}, shared and noisy",
        "* Broker: Google's Pub/Sub emulator on loopback, one process for the run; "
        "ACK_DEADLINE 10 s",
        "",
        "\"Not processed within\" the timeout is not a loss counted by relay: those",
        "messages are still on the subscription. The emulator (0.8.20) keeps handing",
        "messages to a streaming pull that has ended (a killed worker's, or the one a",
        "partition broke) and takes them back only when that stream's ack deadline",
        "passes (relay leases in steps of `ACK_DEADLINE`, 10 s here), often to hand",
        "them to the dead stream again; see `tests/faults/test_crash.py` and",
        "`test_partition.py`. On Pub/Sub itself they would be redelivered to the",
        "live worker once the lease lapses; this run could not show that.",
        "",
        "| scenario | figure |", "|---|---|",
    ]
    c = results.get("crash", {})
    if "error" in c:
        lines.append(f"| kill -9 | failed: {c['error']} |")
    elif c:
        lines += [
            f"| kill -9 of one of two workers draining {c['messages']:,} messages "
            f"({c['done_at_kill']:,} done at the kill, {c['done_by_killed']:,} by the killed "
            f"one) | **{c['lost']} not processed within {c['timeout_s']:.0f} s**, "
            f"{c['duplicated']} handled twice or more ({c['extra_deliveries']} extra handler "
            "runs) |",
            f"| ... every message handled, after the kill | {_s(c['all_after_kill_s'])} |",
        ]
    p = results.get("partition", {})
    if "error" in p:
        lines.append(f"| partition | failed: {p['error']} |")
    elif p:
        lines += [
            f"| {p['cut_s']:.0f} s partition, {p['published_during']} messages published "
            f"during it | **{p['lost']} not processed within {p['timeout_s']:.0f} s**; "
            f"worker state during the cut: "
            f"`{p['state_during_cut']}` |",
            f"| ... first message handled after the restore | "
            f"{_s(p['first_after_restore_s'])} |",
            f"| ... all of them handled after the restore | {_s(p['all_after_restore_s'])} |",
        ]
    d = results.get("drain", {})
    if "error" in d:
        lines.append(f"| drain | failed: {d['error']} |")
    elif d:
        lines.append(
            f"| SIGTERM with {d['inflight']} handlers running ({d['sleep_s']:g} s each), "
            f"to exit | {_s(d['sigterm_to_exit_s'])}; exit {d['exit_code']}; "
            f"{d['done']}/{d['inflight']} finished, {d['acks_on_wire']} acks accepted |"
        )
    for key, label in (("publish", "PUBLISHER_MAX_MESSAGES=1000, behaviour error"),
                       ("publish_baseline", "limit lifted (10,000,000)")):
        m = results.get(key)
        if not m:
            continue
        if "error" in m:
            lines.append(f"| publishing to an unreachable endpoint, {label} | not measured: "
                         f"{m['error']} |")
            continue
        lines.append(
            f"| peak RSS publishing {m['messages']:,} messages to an unreachable endpoint, "
            f"{label}, retry timeout 2 s | **{_mb(m['hwm_kb'])}** (after `import relay`: "
            f"{_mb(m['hwm_after_import_kb'])}; `ru_maxrss` {_mb(m['ru_maxrss_kb'])}); "
            f"raised at publish: {m['raised'] or 'none'}; futures that failed later: "
            f"{m['futures'].get('failed', 0):,} |"
        )
    return "\n".join(lines) + "\n"


def write_doc(section: str) -> None:
    block = f"{START}\n{section}{END}"
    if not DOC.exists():
        DOC.write_text(f"# Reliability\n\n## Numbers\n\n{block}\n")
        return
    text = DOC.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        DOC.write_text(head + block + tail)
    else:
        DOC.write_text(text.rstrip("\n") + f"\n\n## Numbers\n\n{block}\n")


def run_on_emulator(
    work: Path, args: argparse.Namespace, only: set[str], results: dict[str, dict[str, Any]]
) -> None:
    from relay.emulator import Emulator

    with Emulator() as emulator:
        print(f"emulator on {emulator.address} (pid {emulator.pid})", flush=True)
        if "crash" in only:
            results["crash"] = crash(emulator.address, work, args)
            print("crash:", results["crash"], flush=True)
        if "partition" in only:
            results["partition"] = partition(emulator.address, args)
            print("partition:", results["partition"], flush=True)
        if "drain" in only:
            results["drain"] = drain(emulator.address, work, args)
            print("drain:", results["drain"], flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="crash scenario")
    parser.add_argument("--cut", type=float, default=10.0, help="partition length, seconds")
    parser.add_argument("--partition-messages", type=int, default=200,
                        help="messages published before the cut, and again during it")
    parser.add_argument("--inflight", type=int, default=200, help="drain scenario")
    parser.add_argument("--sleep", type=float, default=1.5, help="drain handler time")
    parser.add_argument("--publish", type=int, default=200_000, help="publish-memory scenario")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure publishing with the back-pressure limit lifted")
    parser.add_argument("--only", default="crash,partition,drain,publish",
                        help="comma-separated scenarios to run")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for a scenario to complete")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",")}

    guard_environment()
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-reliability-") as tmp:
        if only & {"crash", "partition", "drain"}:
            run_on_emulator(Path(tmp), args, only, results)
    if "publish" in only:
        results["publish"] = publish_memory(args, limited=True)
        print("publish:", results["publish"], flush=True)
        if args.baseline:
            results["publish_baseline"] = publish_memory(args, limited=False)
            print("publish, limit lifted:", results["publish_baseline"], flush=True)

    command = "uv run python bench/bench_reliability.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    section = render(results, command.strip(), started)
    print()
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"wrote {DOC.relative_to(ROOT)}")
    failed = any("error" in r or r.get("lost") for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
