"""Reliability figures on the Pub/Sub emulator: crash, partition, drain, publish memory.

    uv run python bench/bench_reliability.py [--messages 10000] [--cut 10] [--inflight 200]
                                             [--publish 200000] [--baseline] [--no-write]

The scenarios of ``tests/faults`` at larger sizes, timed. It starts Google's
Pub/Sub emulator on a free loopback port (``relay.emulator``) and runs:

* **crash**: ``--messages`` messages drained by a ``relay-cli run`` worker on
  the faults app (``tests/faults/app``), ``kill -9``'d once a third are done;
  then a second worker is started and finishes. Messages lost (must be 0),
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
  so it is only an upper bound.

It runs on Google's emulator (``KIND``), whose faults these figures are about,
with the fault tests' settings for it (``fault_settings("google")``): crash and
partition run with ``STREAM_LIFETIME=15``. ``--baseline`` also runs them with relay's default
(``STREAM_LIFETIME=0``: google-cloud-pubsub's own streaming-pull deadline,
30 min), and publishing with the limit lifted, side by side in the same run.

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
import os
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

from _common import guard_environment, last_json, linux_python, write_section  # noqa: E402

from tests.faults.helpers import (  # noqa: E402
    GOOGLE_WORKAROUNDS,
    Direct,
    WorkerProcess,
    done_counts,
    duplicates,
    fault_settings,
    read_records,
    subscription_for,
    worker_env,
)
from tests.faults.proxy import TcpProxy  # noqa: E402
from tests.faults.wire import wire_counts  # noqa: E402

PROJECT = "relay-bench"
DOC = ROOT / "docs" / "reliability.md"
#: The emulator these figures are about (docs/reliability.md, "The emulator").
KIND = "google"
#: The fault tests' STREAM_LIFETIME on it: Google's emulator stops serving a
#: killed or cut-off worker's stream within it.
FAULT_LIFETIME = float(GOOGLE_WORKAROUNDS["STREAM_LIFETIME"])
#: relay's default STREAM_LIFETIME, google-cloud-pubsub's own deadline (30 min):
#: what the --baseline runs use.
DEFAULT_LIFETIME = 0.0


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
def crash(address: str, work: Path, args: argparse.Namespace,
          lifetime: float, run: int = 0) -> dict[str, Any]:
    """The issue's scenario: one worker drains the messages and is killed once a
    third are done; a second worker is started and finishes. ``lifetime``: the
    STREAM_LIFETIME of both workers (0: relay's default)."""
    n = args.messages
    label = f"{lifetime:g}-{run}"
    topic = f"reliability-crash-{label}"
    records = work / f"crash-{label}.records"
    extra = {"STREAM_LIFETIME": lifetime}
    with Direct(address, PROJECT, kind=KIND) as direct:
        direct.provision(topic)
        direct.publish_ids(topic, range(n))
        env = worker_env(address, kind=KIND, project=PROJECT, topic=topic, records=records,
                         settings=extra)
        with WorkerProcess(env, work / f"crash-killed-{label}.log", log_level="WARNING") as victim:
            if not wait(lambda: count_done(records) >= n // 3, args.timeout):
                return {"error": f"a third was not handled: {victim.output()[-500:]}"}
            victim.kill()
        killed = time.monotonic()
        at_kill = len(done_counts(read_records(records)))
        with WorkerProcess(env, work / f"crash-second-{label}.log", log_level="WARNING") as second:

            def all_done() -> bool:
                return count_done(records) >= n and len(done_counts(read_records(records))) >= n

            finished = wait(all_done, args.timeout, interval=0.5)
            all_s = time.monotonic() - killed if finished else None
            second.terminate()
            exit_code = second.wait(120)
    counts = done_counts(read_records(records))
    dups = duplicates(counts)
    return {
        "messages": n, "done_at_kill": at_kill, "stream_lifetime": lifetime,
        "lost": n - len(set(counts) & set(range(n))), "duplicated": len(dups),
        "extra_deliveries": sum(v - 1 for v in dups.values()), "all_after_kill_s": all_s,
        "second_exit": exit_code, "timeout_s": args.timeout,
    }


def partition(address: str, args: argparse.Namespace,
              lifetime: float, run: int = 0) -> dict[str, Any]:
    import relay

    label = f"{lifetime:g}-{run}"
    topic = f"reliability-partition-{label}"
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

    with Direct(address, PROJECT, kind=KIND) as direct, TcpProxy(address) as proxy:
        direct.provision(topic)
        saved = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = proxy.address  # read when the worker's client is built
        settings = relay.Settings.load(fault_settings(KIND), environ={}, gc_project_id=PROJECT,
                                       middleware=[], stream_lifetime=lifetime)
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
            "stream_lifetime": lifetime,
            "first_after_restore_s": after[0] if after else None,
            "all_after_restore_s": after[-1] if len(after) == len(during) else None,
            "proxy": proxy.stats().__dict__, "timeout_s": args.timeout,
        }


def drain(address: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = args.inflight
    topic = "reliability-drain"
    records, wire = work / "drain.records", work / "drain.wire"
    with Direct(address, PROJECT, kind=KIND) as direct:
        direct.provision(topic)
        direct.publish_ids(topic, range(n))
    env = worker_env(
        address, kind=KIND, project=PROJECT, topic=topic, records=records, sleep=args.sleep,
        wire_log=wire,
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
    result: dict[str, Any] | None = last_json(proc.stdout)
    if result is None:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    result["limited"] = limited
    return result


# -------------------------------------------------------------------- output
def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one scenario: the first's settings, every run's figures."""
    for r in runs:
        if "error" in r:
            return r
    merged = dict(runs[0])
    merged["runs"] = runs
    merged["lost"] = sum(r["lost"] for r in runs)
    return merged


def _each(result: dict[str, Any], key: str, fmt: Callable[[Any], str] = str) -> str:
    """``key`` of every run, comma-separated."""
    return ", ".join(fmt(r[key]) for r in result.get("runs", [result]))


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _lifetime(key: str) -> str:
    """How the STREAM_LIFETIME of scenario ``key`` reads in the table."""
    if key.endswith("_baseline"):
        return "relay's default STREAM_LIFETIME (google's 30 min)"
    return f"STREAM_LIFETIME={FAULT_LIFETIME:g} (the fault tests')"


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MB"


def render(results: dict[str, dict[str, Any]], command: str, started: dt.datetime) -> str:
    lines = [
        "Produced by one command (it rewrites only this section):",
        "",
        "```", command, "```", "",
        f"* Run: {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {linux_python()}, "
        "shared and noisy",
        "* Broker: Google's Pub/Sub emulator on loopback, one process for the run; "
        "ACK_DEADLINE 10 s",
        "",
        "\"Not processed within\" the timeout is not a loss counted by relay: those",
        f"messages are still on the subscription. `STREAM_LIFETIME={FAULT_LIFETIME:g}` is what the",
        "fault tests set; relay's default is google-cloud-pubsub's own streaming-pull",
        "deadline (30 min): the emulator keeps serving a killed or cut-off worker's",
        "stream until that deadline (see \"The emulator\" above). Where a scenario",
        "ran more than once, every run's figure is listed, in run order.",
        "",
        "| scenario | figure |", "|---|---|",
    ]
    for key in ("crash", "crash_baseline"):
        c = results.get(key, {})
        lifetime = _lifetime(key)
        if "error" in c:
            lines.append(f"| kill -9, {lifetime} | failed: {c['error']} |")
        elif c:
            n_runs = len(c.get("runs", [c]))
            lines += [
                f"| kill -9 of a worker draining {c['messages']:,} messages, then a second "
                f"worker; {lifetime}; {n_runs} run(s) | **{c['lost']} not processed within "
                f"{c['timeout_s']:.0f} s**; handled twice or more: "
                f"{_each(c, 'duplicated')}; done at the kill: "
                f"{_each(c, 'done_at_kill', lambda v: f'{v:,}')} |",
                f"| ... every message handled, after the kill | "
                f"{_each(c, 'all_after_kill_s', _s)} |",
            ]
    for key in ("partition", "partition_baseline"):
        p = results.get(key, {})
        lifetime = _lifetime(key)
        if "error" in p:
            lines.append(f"| partition, {lifetime} | failed: {p['error']} |")
        elif p:
            n_runs = len(p.get("runs", [p]))
            lines += [
                f"| {p['cut_s']:.0f} s partition, {p['published_during']} messages published "
                f"during it; {lifetime}; {n_runs} run(s) | **{p['lost']} not processed within "
                f"{p['timeout_s']:.0f} s**; worker state during the cut: "
                f"{_each(p, 'state_during_cut', lambda v: f'`{v}`')} |",
                f"| ... first message handled after the restore | "
                f"{_each(p, 'first_after_restore_s', _s)} |",
                f"| ... all of them handled after the restore | "
                f"{_each(p, 'all_after_restore_s', _s)} |",
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
    write_section(DOC, "bench_reliability", section, heading="## Numbers")


def run_on_emulator(
    work: Path, args: argparse.Namespace, only: set[str], results: dict[str, dict[str, Any]]
) -> None:
    from relay.emulator import Emulator

    with Emulator(kind=KIND) as emulator:
        print(f"emulator on {emulator.address} (pid {emulator.pid})", flush=True)
        for scenario in ("crash", "partition"):
            if scenario not in only:
                continue
            for key, lifetime in ((scenario, FAULT_LIFETIME),
                                  (f"{scenario}_baseline", DEFAULT_LIFETIME)):
                if key.endswith("_baseline") and not args.baseline:
                    continue
                runs = []
                for run in range(args.repeat):
                    if scenario == "crash":
                        runs.append(crash(emulator.address, work, args, lifetime, run))
                    else:
                        runs.append(partition(emulator.address, args, lifetime, run))
                    print(f"{key} run {run + 1}:", runs[-1], flush=True)
                results[key] = combine(runs)
        if "drain" in only:
            results["drain"] = drain(emulator.address, work, args)
            print("drain:", results["drain"], flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="crash scenario")
    parser.add_argument("--cut", type=float, default=10.0, help="partition length, seconds")
    parser.add_argument("--partition-messages", type=int, default=200,
                        help="messages published before the cut, and again during it")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of crash and partition (each mode), all reported")
    parser.add_argument("--inflight", type=int, default=200, help="drain scenario")
    parser.add_argument("--sleep", type=float, default=1.5, help="drain handler time")
    parser.add_argument("--publish", type=int, default=200_000, help="publish-memory scenario")
    parser.add_argument("--baseline", action="store_true",
                        help="also run crash and partition with relay's default "
                             "STREAM_LIFETIME (google's 30 min), and publishing with the "
                             "limit lifted")
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
    failed = any("error" in r or r.get("lost")
                 for key, r in results.items() if not key.endswith("_baseline"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
