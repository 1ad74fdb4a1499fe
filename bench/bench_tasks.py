"""Tasks on the Pub/Sub emulator: ``.delay()`` to result, and tasks per second.

    uv run python bench/bench_tasks.py [--round-trips 300] [--burst 2000] [--delayed 200]
                                       [--countdown 3] [--no-write]

Starts Google's Pub/Sub emulator on a free loopback port (``relay.emulator``), a
worker in its own process (this script with ``worker``: a ``relay.Worker`` on
two tasks, relay's default settings but ``DEFAULT_RETRY_POLICY=none``, logging
at WARNING) and, in this process, a caller with ``RESULTS="pubsub"``: outcomes
come back over Pub/Sub on the caller's reply subscription. Then:

* **round trip**: ``--round-trips`` calls one after the other, each timed from
  ``echo.delay(i)`` to ``result()`` returning (p50, p99, max);
* **throughput**: ``--burst`` calls sent at once (``.delay()`` does not wait
  for Pub/Sub), then every result awaited: tasks per second from the first
  ``delay()`` to the last result; once for a task that records ``started``
  (the default: two outcome messages per task) and once with
  ``track_started=False`` (one);
* **delayed**: ``--delayed`` calls with ``countdown=--countdown``, sent at once;
  lateness is the time the task ran minus its ETA (the worker holds each
  message until then, see ``relay.delays``).

Prints the figures and writes them into ``docs/performance.md`` between the
``bench_tasks`` markers (the rest of the page is left alone). Figures, never a
pass/fail on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import PROJECT, guard_environment, linux_python, write_section  # noqa: E402

from relay import task  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
SECTION = "bench_tasks"
HEADING = "## Tasks: round trip and throughput"
SETTINGS: dict[str, Any] = {
    "GC_PROJECT_ID": PROJECT,
    "DEFAULT_RETRY_POLICY": None,
    "RESULTS": "pubsub",
    "SUB_PREFIX": "bench",
}


# Explicit topics: this module runs as __main__ in both processes.
@task("bench-tasks-echo")
def echo(i: int) -> dict[str, float]:
    return {"i": i, "ran": time.time()}


@task("bench-tasks-echo-quiet", track_started=False)
def echo_quiet(i: int) -> dict[str, float]:
    return {"i": i, "ran": time.time()}


def worker() -> int:
    """The worker process: consume both tasks until stdin closes."""
    import relay

    logging.basicConfig(level=logging.WARNING)
    settings = relay.Settings.load(SETTINGS)
    with relay.Worker([echo, echo_quiet], settings=settings):
        print("ready", flush=True)
        sys.stdin.read()
    return 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def round_trips(count: int) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        echo.delay(i).result(timeout=60)
        times.append(time.perf_counter() - started)
    return times


def burst(fn: Any, count: int) -> tuple[float, float]:
    """(tasks per second, seconds spent in delay() calls)."""
    started = time.perf_counter()
    handles = [fn.delay(i) for i in range(count)]
    sent = time.perf_counter() - started
    for handle in handles:
        handle.result(timeout=120)
    return count / (time.perf_counter() - started), sent


def delayed(count: int, countdown: float) -> list[float]:
    due = []
    handles = []
    for i in range(count):
        due.append(time.time() + countdown)
        handles.append(echo.apply_async((i,), countdown=countdown))
    return [h.result(timeout=countdown + 120)["ran"] - eta for h, eta in zip(handles, due,
                                                                               strict=True)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--delayed", type=int, default=200)
    parser.add_argument("--countdown", type=float, default=3.0)
    parser.add_argument("--warmup", type=int, default=50, help="round trips not counted")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    args = parser.parse_args(argv)

    guard_environment()
    logging.basicConfig(level=logging.WARNING)
    import relay
    from relay.emulator import running_emulator

    started = dt.datetime.now(dt.timezone.utc)
    with running_emulator() as emulator:
        print(f"emulator on {emulator.address} (pid {emulator.pid})", flush=True)
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                print("the worker did not start", file=sys.stderr)
                return 1
            relay.configure(relay.Settings.load(SETTINGS))
            round_trips(args.warmup)
            trips = round_trips(args.round_trips)
            print(f"round trip: p50 {_ms(percentile(trips, 50))}, "
                  f"p99 {_ms(percentile(trips, 99))}", flush=True)
            rate, sent = burst(echo, args.burst)
            print(f"burst: {rate:,.0f} tasks/s ({sent:.2f} s in delay())", flush=True)
            quiet_rate, quiet_sent = burst(echo_quiet, args.burst)
            print(f"burst, track_started=False: {quiet_rate:,.0f} tasks/s", flush=True)
            late = delayed(args.delayed, args.countdown)
            print(f"delayed: lateness p50 {_ms(percentile(late, 50))}, "
                  f"p99 {_ms(percentile(late, 99))}", flush=True)
        finally:
            relay.reset()
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    command = ("uv run python bench/bench_tasks.py " + " ".join(argv)).strip()
    rows = [
        (f"round trip, `.delay()` to `result()`, one at a time ({args.round_trips})",
         f"p50 **{_ms(percentile(trips, 50))}**, p99 **{_ms(percentile(trips, 99))}**, "
         f"max {_ms(max(trips))}"),
        (f"throughput, {args.burst:,} sent at once, to the last result",
         f"**{rate:,.0f} tasks/s** ({sent:.2f} s of it in `.delay()` calls)"),
        ("the same, `track_started=False`",
         f"**{quiet_rate:,.0f} tasks/s** ({quiet_sent:.2f} s in `.delay()`)"),
        (f"{args.delayed} tasks with `countdown={args.countdown:g}`: ran after their ETA by",
         f"p50 {_ms(percentile(late, 50))}, p99 {_ms(percentile(late, 99))}, "
         f"max {_ms(max(late))}"),
    ]
    table = "\n".join(f"| {what} | {figure} |" for what, figure in rows)
    section = f"""{HEADING}

Produced by one command (it rewrites only this section):

```
{command}
```

* Run: {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {linux_python()}, \
shared and noisy
* Broker: Google's Pub/Sub emulator on loopback. The worker is another process
  (`relay.Worker`, relay's defaults: `CONCURRENCY=16`, `FLOW_MAX_MESSAGES=100`,
  `LoggingMiddleware` at WARNING); the caller has `RESULTS="pubsub"`, so every
  outcome is a message on `relay-results` read on the caller's reply subscription.
* The task returns a small dict; `echo` records `started` (two outcome messages
  per task), `echo_quiet` has `track_started=False` (one).

| measure | figure |
|---|---|
{table}

A round trip is two messages one after the other: the task message to the
worker and its outcome back to the caller, each batched by google's publisher
(up to 10 ms) and delivered by a streaming pull. Throughput is bound by the
emulator and the two shared cores: each task is one message on its own
subscription and one or two on the caller's reply subscription, and the
worker and the caller share the machine with the emulator. A delayed task is
held by the worker (not run, its lease extended) and runs within milliseconds
of its ETA.
"""
    print()
    print(section)
    if not args.no_write:
        write_section(DOC, SECTION, section, heading="")
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
