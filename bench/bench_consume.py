"""Consume benchmark: bare google-cloud-pubsub vs relay vs Relé, on the emulator.

    uv run --group bench python bench/bench_consume.py [--messages 20000] [--repeat 3]

Starts Google's Pub/Sub emulator on a free loopback port, creates one topic and
one fresh subscription per (contender, round), publishes ``--messages`` JSON
messages (~300 bytes, 2 attributes) once, so every subscription holds the same
messages, then drains each subscription with one contender in its own process
(``bench/consumer.py``), interleaved round by round. Prints a table and writes
``docs/performance.md`` (unless ``--no-write``), including the in-process
overhead figures of ``bench/bench_overhead.py``.

Figures, never a pass/fail: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    ATTRIBUTES,
    PROJECT,
    TOPIC,
    guard_environment,
    last_json,
    marked_section,
    median,
    payload,
    proc_cpu_seconds,
)
from stacks import summarise as summarise_stacks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "performance.md"

#: name -> (consumer.py contender, logging mode)
VARIANTS: dict[str, tuple[str, str]] = {
    "bare": ("bare", "warning"),
    "relay": ("relay", "warning"),
    "rele": ("rele", "warning"),
    "relay-info": ("relay", "info"),
    "rele-info": ("rele", "info"),
    "relay-grpc": ("relay-grpc", "warning"),
}
DEFAULT_VARIANTS = "bare,relay,rele,relay-info,rele-info,relay-grpc"


@dataclass
class Run:
    variant: str
    round: int
    result: dict[str, Any]
    emulator_cpu_s: float

    @property
    def ok(self) -> bool:
        return bool(self.result.get("ok"))

    @property
    def us_per_msg(self) -> float:
        return 1e6 * float(self.result["cpu_s"]) / max(1, int(self.result["received"]))

    @property
    def rate(self) -> float:
        return self.result["received"] / self.result["wall_s"] if self.result["wall_s"] else 0.0


def sub_name(variant: str, rnd: int) -> str:
    return f"{variant.replace('-', '')}{rnd}-{TOPIC}"


def provision_and_publish(names: list[str], messages: int) -> float:
    """Create the topic and every subscription, then publish once. Returns seconds."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_latency=0.05)
    )
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, TOPIC)
    publisher.create_topic(request={"name": topic})
    for name in names:
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PROJECT, name),
                "topic": topic,
                "ack_deadline_seconds": 60,
            }
        )
    subscriber.close()
    started = time.perf_counter()
    futures = [publisher.publish(topic, payload(i), **ATTRIBUTES) for i in range(messages)]
    for future in futures:
        future.result(timeout=120)
    elapsed = time.perf_counter() - started
    publisher.stop()
    return elapsed


def run_consumer(
    variant: str, rnd: int, name: str, args: argparse.Namespace, emulator_pid: int | None,
    messages: int, spy: Path | None = None,
) -> Run:
    contender, log = VARIANTS[variant]
    prefix = [] if spy is None else [
        args.py_spy_bin, "record", "--gil", "--nonblocking", "--rate", "1000", "--format", "raw",
        "--output", str(spy), "--",
    ]
    cmd = [
        *prefix, sys.executable, str(HERE / "consumer.py"), contender, "--subscription", name,
        "--messages", str(messages), "--concurrency", str(args.concurrency),
        "--flow", str(args.flow), "--log", log, "--timeout", str(args.timeout),
    ]
    emu0 = proc_cpu_seconds(emulator_pid)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout + 90, check=False,
            cwd=ROOT,
        )
        result: dict[str, Any] = last_json(proc.stdout) or {
            "ok": False, "error": f"exit {proc.returncode}: {proc.stderr[-800:]}"}
    except subprocess.TimeoutExpired:
        result = {"ok": False, "error": "consumer process timed out"}
    return Run(variant, rnd, result, proc_cpu_seconds(emulator_pid) - emu0)


def versions() -> dict[str, str]:
    out = {}
    for dist in ("google-cloud-pubsub", "grpcio", "orjson", "rele", "relay-pubsub"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def relay_revision() -> str:
    """The commit relay was measured at, and any uncommitted files under relay/."""
    def git(*cmd: str) -> str:
        try:
            out = subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=30,
                                 check=False, cwd=ROOT)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.rstrip()  # keep porcelain's leading status columns

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "relay").splitlines()]
    if not dirty:
        return f"commit {head}"
    return f"commit {head} plus uncommitted {', '.join(dirty)}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarise(runs: list[Run], variants: list[str]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for v in variants:
        mine = [r for r in runs if r.variant == v]
        ok = [r for r in mine if r.ok]
        table[v] = {
            "runs": len(mine),
            "ok": len(ok),
            "us_per_msg": median(r.us_per_msg for r in ok),
            "cpu_s_per_1k": median(r.us_per_msg / 1000 for r in ok),
            "rate": median(r.rate for r in ok),
            "first_s": median(r.result["first_message_s"] for r in ok),
            "emulator_cpu_s": median(r.emulator_cpu_s for r in ok),
            "all_us": [round(r.us_per_msg, 1) for r in ok],
            "errors": [r.result.get("error", "") for r in mine if not r.ok],
        }
    return table


def ratios(runs: list[Run], num: str, den: str) -> dict[str, Any]:
    """Per-round ratios of CPU per message (same round = same emulator state)."""
    per_round = []
    rounds = sorted({r.round for r in runs})
    for rnd in rounds:
        a = [r for r in runs if r.variant == num and r.round == rnd and r.ok]
        b = [r for r in runs if r.variant == den and r.round == rnd and r.ok]
        if a and b:
            per_round.append(a[0].us_per_msg / b[0].us_per_msg)
    return {"per_round": [round(x, 2) for x in per_round], "median": median(per_round)}


def render_table(table: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| contender | runs ok | CPU s / 1,000 msgs | CPU µs / msg (each run) | msgs/s (wall) "
        "| first message after | emulator CPU s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        if not row["ok"]:
            lines.append(f"| {name} | 0/{row['runs']} | — | — | — | — | — |")
            continue
        lines.append(
            f"| {name} | {row['ok']}/{row['runs']} | {row['cpu_s_per_1k']:.3f} "
            f"| {row['us_per_msg']:.0f} ({', '.join(f'{x:.0f}' for x in row['all_us'])}) "
            f"| {row['rate']:,.0f} | {row['first_s']:.2f} s | {row['emulator_cpu_s']:.1f} |"
        )
    return "\n".join(lines)


def run_overhead(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.no_overhead:
        return None
    cmd = [sys.executable, str(HERE / "bench_overhead.py"), "--json", "--messages",
           str(args.overhead_messages)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    data: dict[str, Any] | None = last_json(proc.stdout)
    if data is None:
        print("bench_overhead.py failed:", proc.stderr[-2000:], file=sys.stderr)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="bare scheduler threads = relay CONCURRENCY = Relé threads")
    parser.add_argument("--flow", type=int, default=1000, help="max outstanding messages")
    parser.add_argument("--warmup", type=int, default=5000,
                        help="messages a bare consumer drains first (not reported)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per consumer run")
    parser.add_argument("--overhead-messages", type=int, default=20_000)
    parser.add_argument("--no-overhead", action="store_true", help="skip bench_overhead.py")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="after the measured rounds, one extra run per variant under "
                        "py-spy (not counted), collapsed stacks written to DIR/VARIANT.txt; "
                        "summarise them with bench/stacks.py")
    parser.add_argument("--py-spy-bin", default="py-spy")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; choose from {list(VARIANTS)}")

    guard_environment()
    if any(VARIANTS[v][0] == "rele" for v in variants):
        try:
            metadata.version("rele")
        except metadata.PackageNotFoundError:
            parser.error("Relé is not installed in this environment: run through "
                         "`uv run --group bench ...`, or leave the rele variants out (--variants)")
    from relay.emulator import running_emulator

    started = dt.datetime.now(dt.timezone.utc)
    names = {(v, r): sub_name(v, r) for r in range(args.repeat) for v in variants}
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
        names.update({(v, -1): f"spy{v.replace('-', '')}-{TOPIC}" for v in variants})
    warm = f"warmup-{TOPIC}"
    runs: list[Run] = []
    with running_emulator() as emulator:
        print(f"emulator on {emulator.address} (pid {emulator.pid})", flush=True)
        publish_s = provision_and_publish([warm, *names.values()], args.messages)
        print(f"published {args.messages} messages to {len(names) + 1} subscriptions "
              f"in {publish_s:.1f} s", flush=True)
        if args.warmup:
            w = run_consumer("bare", -1, warm, args, emulator.pid,
                             min(args.warmup, args.messages))
            print(f"warm-up: {w.result.get('received', 0)} msgs, "
                  f"{w.rate:,.0f} msgs/s" if w.ok else f"warm-up failed: {w.result}", flush=True)
        for rnd in range(args.repeat):
            for v in variants:
                run = run_consumer(v, rnd, names[(v, rnd)], args, emulator.pid, args.messages)
                runs.append(run)
                if run.ok:
                    print(f"round {rnd} {v:<11} {run.us_per_msg:7.1f} µs CPU/msg "
                          f"{run.rate:8,.0f} msgs/s  emulator CPU {run.emulator_cpu_s:.1f} s",
                          flush=True)
                else:
                    print(f"round {rnd} {v:<11} FAILED: {run.result.get('error')}", flush=True)
        spy_text: dict[str, str] = {}
        if args.py_spy:
            for v in variants:
                out = args.py_spy / f"{v}.txt"
                spied = run_consumer(v, -1, names[(v, -1)], args, emulator.pid, args.messages, out)
                print(f"py-spy {v}: {'ok' if spied.ok else spied.result.get('error')} -> {out}",
                      flush=True)
                if spied.ok and out.exists():
                    match = "rele/" if v.startswith("rele") else "relay/"
                    spy_text[v] = summarise_stacks(out, 15, match)
    finished = dt.datetime.now(dt.timezone.utc)

    table = summarise(runs, variants)
    ratio_rows = {}
    for num, den in (("relay", "bare"), ("relay", "rele"), ("rele", "bare"),
                     ("relay-info", "bare"), ("relay-info", "rele-info"),
                     ("relay-grpc", "relay"), ("relay-grpc", "bare")):
        if num in variants and den in variants:
            ratio_rows[f"{num} / {den}"] = ratios(runs, num, den)
    configs = {r.variant: r.result.get("config", {}) for r in runs if r.ok}
    overhead = run_overhead(args)

    print()
    print(render_table(table))
    print()
    for label, row in ratio_rows.items():
        print(f"CPU per message {label}: median {row['median']:.2f} "
              f"(per round {row['per_round']})")
    if overhead:
        print()
        print(overhead["table_md"])

    env_prefix = (
        f"UV_PROJECT_ENVIRONMENT={os.environ['UV_PROJECT_ENVIRONMENT']} "
        if os.environ.get("UV_PROJECT_ENVIRONMENT") else ""
    )
    info = {
        "command": f"{env_prefix}uv run --group bench python bench/bench_consume.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "spy": spy_text,
        "started": started, "finished": finished, "publish_s": publish_s,
        "versions": versions(), "configs": configs, "revision": relay_revision(),
    }
    if not args.no_write:
        DOC.parent.mkdir(exist_ok=True)
        # The sections bench_latency.py, bench_tasks.py and bench_publish.py
        # write, carried over.
        carried = ("bench_latency", "bench_tasks", "bench_publish", "bench_push", "bench_targets2",
                   "bench_targets")
        kept = "\n\n".join(k for k in (marked_section(DOC, n) for n in carried) if k)
        DOC.write_text(render_doc(args, table, ratio_rows, overhead, info)
                       + (f"\n{kept}\n" if kept else ""))
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    return 0 if all(r.ok for r in runs) else 1


def render_doc(
    args: argparse.Namespace, table: dict[str, dict[str, Any]],
    ratio_rows: dict[str, dict[str, Any]], overhead: dict[str, Any] | None, info: dict[str, Any],
) -> str:
    v = info["versions"]
    ratio_lines = "\n".join(
        f"| {label} | **{row['median']:.2f}** | {', '.join(f'{x:.2f}' for x in row['per_round'])} |"
        for label, row in ratio_rows.items()
    )
    relay_bare = ratio_rows.get("relay / bare", {}).get("median", float("nan"))
    verdict = (
        f"relay's CPU per message is **{relay_bare:.2f}x** the bare client's "
        f"(target: at most 1.3x): "
        + ("within the target." if relay_bare <= 1.3 else "**over the target.**")
    )
    errors = "\n".join(
        f"* {name}: {err}" for name, row in table.items() for err in row["errors"]
    ) or "none"
    overhead_md = overhead["doc_md"] if overhead else "_not run (`--no-overhead`)._"
    spy: dict[str, str] = info["spy"]
    spy_md = (
        "## Where the consumer's time goes (py-spy)\n\n"
        "One extra run per contender under `py-spy record --gil` (only the thread holding "
        "the GIL is sampled, so these are shares of the time the process ran Python code; "
        "imports and set-up stacks are dropped; not counted in the table above). Summaries "
        "by `bench/stacks.py`:\n\n"
        + "\n\n".join(f"```\n{text}\n```" for text in spy.values()) + "\n"
        if spy else ""
    )
    return f"""# Performance

The numbers below are produced by one command; re-run it to refresh this page
(it rewrites the whole file but the latency section, which
`bench/bench_latency.py` writes). They are figures, not tests: nothing fails on time.

```
{info['command'].strip()}
```

* Run: {info['started']:%Y-%m-%d %H:%M} to {info['finished']:%H:%M} UTC
* Machine: {os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}, \
shared with other work and noisy
* Python {platform.python_version()}; google-cloud-pubsub {v['google-cloud-pubsub']}, \
grpcio {v['grpcio']}, orjson {v['orjson']}, rele {v['rele']}, relay {v['relay-pubsub']}
  at {info['revision']}
* Broker: Google's Pub/Sub emulator on loopback (`relay.emulator`), one process for
  the whole run

## Consuming: {args.messages:,} messages from one subscription

{args.messages:,} JSON messages of ~300 bytes with 2 attributes are published once
(in {info['publish_s']:.1f} s) to one topic that has one fresh subscription per
contender and round, so every run drains the same messages from a subscription
nobody touched before. Each run is its own process (`bench/consumer.py`); its CPU
time (`time.process_time()`, all threads) and wall time are measured from just
before the stream opens to the handler's {args.messages:,}th call. Client
construction, provisioning and shutdown are outside the window. Runs are
interleaved ({', '.join(table)}, then again), {args.repeat} round(s), after a
warm-up drain of {args.warmup:,} messages by the bare client (not reported) so
the emulator's JIT is warm. Table: medians over the rounds.

{render_table(table)}

CPU per message, ratio of the two contenders **in the same round** (the machine
is shared; a ratio within one round is the figure of merit), median over rounds:

| ratio | median | per round |
|---|---|---|
{ratio_lines}

{verdict}

**Wall-clock throughput is bound by the emulator**, which streams roughly
2,000 messages/s per stream (its own CPU per run is in the last column of the
table): msgs/s says little about the clients. CPU per message is the
meaningful comparison.

Failed runs: {errors}

### What each contender did

* **bare** — `google.cloud.pubsub_v1.SubscriberClient().subscribe(path, callback,
  flow_control=FlowControl(max_messages={args.flow}), scheduler=ThreadScheduler(
  ThreadPoolExecutor({args.concurrency})))`; the callback `orjson.loads` the data,
  acks, and counts. The baseline: no framework at all.
* **relay** — `relay.Worker([handler])` with settings `CONCURRENCY={args.concurrency}`,
  `FLOW_MAX_MESSAGES={args.flow}`, `DEFAULT_RETRY_POLICY=None` and the default
  middleware (`LoggingMiddleware`), on `TRANSPORT="pubsub"` (`PubSubTransport`);
  `handler` is a sync `@sub` function that only counts. `worker.start()` opens the
  stream; the clock stops at the last handler call. Logging is configured at
  **WARNING**, so `LoggingMiddleware`'s per-message INFO line is never formatted.
  Recorded configuration: `{json.dumps(info['configs'].get('relay', {}), ensure_ascii=False)}`.
* **relay-info** — the same, with the `relay` logger at **INFO** and a handler that
  formats every record (`%(asctime)s %(levelname)s %(name)s %(message)s`) and writes
  it to `os.devnull`: the price of one INFO line per message.
* **rele** — Relé {v['rele']}'s consumption path: `rele.worker.Worker([subscription],
  threads_per_subscription={args.concurrency})` with its default middleware
  (`rele.contrib.LoggingMiddleware`, registered by `rele.middleware.register_middleware`
  as `rele.config.setup` does), then `Worker.setup()` and `Worker.start()`, which
  builds its `ThreadPoolExecutor`/`ThreadScheduler`, calls `Subscriber.consume` and
  hands each message to `rele.subscription.Callback` (middleware hooks, stdlib
  `json.loads`, the handler, ack). Left out: `rele.config.setup()` (it resolves
  Application Default Credentials to build the global publisher, which consuming does
  not use), `Worker.run_forever`'s wait loop, and `Worker.stop` (it calls
  `sys.exit`; its futures-cancel-and-close is done directly). Relé's connectivity probe
  (`rele.worker.check_internet_connection`, a TCP connect to port 80 of
  `www.google.com` before each stream opens) is replaced by a function that returns
  True: this machine cannot reach it. Relé passes no `flow_control` to `subscribe`,
  so its flow control is google-cloud-pubsub's default, `max_messages=1000` (the same
  as the others at the default `--flow 1000`). Logging at WARNING; Relé's middleware
  still builds its f-strings and metrics dicts for every message, which is Relé's cost.
* **rele-info** — the same with the `rele` logger at INFO to the same `os.devnull`
  formatter.

Concurrency: bare's scheduler has {args.concurrency} threads (google-cloud-pubsub's
default is 10) and google's dispatcher thread submits each message to it; relay's
transport replaces google's scheduler with an inline one, so google's dispatcher
thread calls relay's callback, which submits the message to the Worker's pool of
`CONCURRENCY={args.concurrency}` threads (relay's default is 16); Relé runs
`THREADS_PER_SUBSCRIPTION={args.concurrency}` threads through google's
`ThreadScheduler` (Relé's default is 2). Every contender therefore has one thread
hop per message and {args.concurrency} handler threads.

## Per-message overhead in process (no network)

`uv run python bench/bench_overhead.py`: relay's `Processor.process` on messages of
the memory transport against a bare `orjson.loads` + ack (single thread), and a
`relay.Worker` on the memory transport against a bare callback on the same transport
(threads: the memory transport's delivery thread, and for relay the hand-off to its
executor of 10 threads). CPU time per message; cheap and repeatable, for finding hot
spots.

{overhead_md}
{spy_md}"""


if __name__ == "__main__":
    sys.exit(main())
