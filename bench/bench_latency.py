"""Latency at a steady rate on the Pub/Sub emulator: relay beside the bare client.

    uv run python bench/bench_latency.py [--rate 200] [--duration 40] [--ack-deadline 60]
                                         [--late 5] [--lifetime 15] [--tail S]
                                         [--variants bare,relay-grpc,relay-pubsub]
                                         [--json PATH] [--no-write]

Starts the default emulator (``relay.emulator``: relay's own server unless
``RELAY_EMULATOR=google``) on a free loopback port and gives each variant a
fresh topic with one fresh subscription (ack deadline ``--ack-deadline``, no
retry policy, nothing else set):

* ``bare``: google-cloud-pubsub's ``SubscriberClient.subscribe`` with its defaults;
* ``relay-grpc``: a ``relay.Worker`` with relay's default settings (but
  ``DEFAULT_RETRY_POLICY=none`` and ``ACK_DEADLINE``, so that its subscription is
  the bare client's) and ``TRANSPORT="grpc"`` named (the default since issue 13);
* ``relay-pubsub``: the same worker with ``TRANSPORT="pubsub"`` (google's client);
* ``relay-short`` (only if ``--variants`` names it): the grpc worker with
  ``STREAM_LIFETIME=--lifetime`` (15 s: what relay used on the emulator by
  default before issue 9).

Before issue 13 the ``relay`` variant named no transport, so it silently became
the grpc transport when that became the default; each relay variant now names
its own. The verdict on issue 13's P4 ("p50 and p99 no worse than the bare
client + 2 ms") is printed and written for ``relay-grpc``; ``--json PATH``
writes the summaries and the verdict for ``bench_targets.py``.

Each consumer runs in its own process (this script with ``consume``), all at the
same time, so they share the machine's noise. This process publishes, with
google's publisher client, ``--rate`` messages a second to every topic for
``--duration`` seconds (~300-byte JSON, the wall-clock time of the ``publish``
call in an attribute); each consumer notes ``time.time()`` when its handler is
called. Latency is that difference, publish batching (google's default, up to
10 ms) included. A message delivered twice counts once, at its first delivery.
After the last publish the consumers wait for what is missing for ``--tail``
seconds (default: one ack deadline plus 20 s): a message the emulator handed to
a stream that had already ended comes back only when its ack deadline passes,
and that tail is what this benchmark is for. A message still missing then counts
as later than the wait, in the percentiles too.

Prints p50, p99, max and the count later than ``--late`` seconds per variant,
with ratios to the bare client, and writes them into ``docs/performance.md``
between the ``bench_latency`` markers (the rest of the page is left alone).
Figures, never a pass/fail on time; the exit code is 1 only if a variant failed
to run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    ATTRIBUTES,
    PROJECT,
    emit,
    guard_environment,
    linux_python,
    loadavg,
    payload,
    write_section,
)

DOC = ROOT / "docs" / "performance.md"
SECTION = "bench_latency"
HEADING = "## Latency at a steady rate"
#: Seconds a consumer keeps waiting by default, past one ack deadline after the
#: last publish.
TAIL_MARGIN = 20.0
#: Seconds allowed for a consumer to start and to see its first message.
START_TIMEOUT = 60.0


#: Issue 13's P4: relay's p50 and p99 no worse than the bare client's + this.
P4_MARGIN_S = 0.002
DEFAULT_VARIANTS = ("bare", "relay-grpc", "relay-pubsub")


def variants(lifetime: float) -> dict[str, tuple[str, dict[str, Any], str]]:
    """name -> (contender, relay settings, what it is)."""
    same = ("(but no retry policy and the same ack deadline, so its subscription is the bare "
            "client's)")
    return {
        "bare": ("bare", {}, "google-cloud-pubsub `SubscriberClient.subscribe`, its defaults"),
        "relay-grpc": ("relay", {"TRANSPORT": "grpc"},
                       f"relay `Worker`, default settings {same}, `TRANSPORT=\"grpc\"` "
                       "(relay's own transport, the default)"),
        "relay-pubsub": ("relay", {"TRANSPORT": "pubsub"},
                         f"relay `Worker`, default settings {same}, `TRANSPORT=\"pubsub\"` "
                         "(google-cloud-pubsub's streaming pull underneath)"),
        "relay-short": (
            "relay", {"TRANSPORT": "grpc", "STREAM_LIFETIME": lifetime},
            f"relay `Worker` on grpc, `STREAM_LIFETIME={lifetime:g}` (the emulator default "
            "before issue 9)",
        ),
    }


def p4_verdict(rows: dict[str, dict[str, Any]], name: str = "relay-grpc") -> dict[str, Any]:
    """Issue 13's P4 for variant ``name``: p50 and p99 <= the bare client's + 2 ms."""
    relay, bare = rows.get(name, {}), rows.get("bare", {})
    keys = ("p50", "p99")
    if not all(isinstance(r.get(k), float) and not math.isnan(r[k]) for r in (relay, bare)
               for k in keys):
        return {"met": None, "text": f"P4: {name} or bare did not run; no verdict."}
    over = {k: relay[k] - bare[k] for k in keys}
    met = all(v <= P4_MARGIN_S for v in over.values())
    text = (f"P4 ({name}): p50 {relay['p50'] * 1000:.1f} ms vs bare {bare['p50'] * 1000:.1f} ms "
            f"({over['p50'] * 1000:+.1f} ms), p99 {relay['p99'] * 1000:.1f} ms vs bare "
            f"{bare['p99'] * 1000:.1f} ms ({over['p99'] * 1000:+.1f} ms): "
            f"{'MET' if met else 'NOT MET'} (target: each no worse than bare + "
            f"{P4_MARGIN_S * 1000:g} ms)")
    return {"met": met, "text": text, "over_ms": {k: v * 1000 for k, v in over.items()}}


# ------------------------------------------------------------- consumer side
def consume(argv: list[str]) -> int:
    """One consumer, in its own process: ``ready`` and ``warm`` lines on stdout,
    then, once it has every message or the deadline this process is sent on
    stdin has passed, one JSON line with the latencies."""
    parser = argparse.ArgumentParser(prog="bench_latency.py consume")
    parser.add_argument("contender", choices=("bare", "relay"))
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--ack-deadline", type=int, required=True)
    parser.add_argument("--settings", default="{}", help="relay settings, JSON")
    parser.add_argument("--timeout", type=float, required=True, help="hard limit, seconds")
    args = parser.parse_args(argv)
    guard_environment()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    hard_stop = time.monotonic() + args.timeout

    first: dict[int, float] = {}
    deliveries = 0
    lock = threading.Lock()
    warm, done = threading.Event(), threading.Event()

    def record(attributes: Any) -> None:
        now = time.time()
        seq = int(attributes["seq"])
        if seq < 0:
            warm.set()
            return
        nonlocal deliveries
        with lock:
            deliveries += 1
            first.setdefault(seq, now - float(attributes["sent_at"]))
            if len(first) >= args.messages:
                done.set()

    start, stop = (_bare if args.contender == "bare" else _relay)(args, record)
    deadline = [hard_stop]

    def read_deadline() -> None:
        for line in sys.stdin:  # "deadline SECONDS": how much longer to wait for the rest
            if line.startswith("deadline "):
                deadline[0] = min(hard_stop, time.monotonic() + float(line.split()[1]))
                return

    threading.Thread(target=read_deadline, daemon=True).start()
    error = ""
    try:
        start()
        print("ready", flush=True)
        if warm.wait(START_TIMEOUT):
            print("warm", flush=True)
        else:
            error = f"no warm-up message within {START_TIMEOUT:g} s"
        while not error and not done.wait(0.2) and time.monotonic() < deadline[0]:
            pass
    except Exception as exc:  # report it, do not hide it
        error = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            stop()
        except Exception as exc:
            error = error or f"stop failed: {type(exc).__name__}: {exc}"
    with lock:
        latencies = [first[seq] for seq in sorted(first)]
        result = {"received": len(first), "deliveries": deliveries, "latencies": latencies,
                  "error": error}
    emit(result)
    return 1 if error else 0


def _bare(args: argparse.Namespace, record: Callable[[Any], None]) -> tuple[Any, Any]:
    from google.cloud import pubsub_v1

    client = pubsub_v1.SubscriberClient()
    path = client.subscription_path(PROJECT, args.subscription)
    state: dict[str, Any] = {}

    def callback(message: Any) -> None:
        record(message.attributes)
        message.ack()

    def start() -> None:
        state["future"] = client.subscribe(path, callback)

    def stop() -> None:
        future = state.get("future")
        if future is not None:
            future.cancel()
            future.result(timeout=30)
        client.close()

    return start, stop


def _relay(args: argparse.Namespace, record: Callable[[Any], None]) -> tuple[Any, Any]:
    import relay

    settings = relay.Settings.load(
        {"GC_PROJECT_ID": PROJECT, "ACK_DEADLINE": args.ack_deadline,
         "DEFAULT_RETRY_POLICY": None, **json.loads(args.settings)},
        environ={},
    )

    @relay.sub(args.subscription)  # topic and subscription share the name
    def handler(data: Any, **attrs: str) -> None:
        record(attrs)

    worker = relay.Worker([handler], settings=settings)
    if worker.subscriptions[0].name != args.subscription:
        raise SystemExit(f"relay would consume {worker.subscriptions[0].name}")
    worker.setup()  # the subscription exists and matches: this changes nothing
    return worker.start, lambda: worker.stop(timeout=30)


# --------------------------------------------------------------- publisher side
class Consumer:
    """A ``consume`` process and the lines it prints, read on a thread."""

    def __init__(self, name: str, cmd: list[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: set[str] = set()
        self.result: dict[str, Any] | None = None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str] | None) -> None:
        for line in stream or ():
            self.lines.put(line.strip())

    def saw(self, word: str) -> bool:
        """Whether it printed ``word`` (or its result) yet, without blocking."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return word in self.seen
            if line.startswith("{"):
                self.result = json.loads(line)
            self.seen.add(line)

    def tell_deadline(self, seconds: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"deadline {seconds}\n")
        self.process.stdin.flush()

    def wait_result(self, timeout: float) -> dict[str, Any]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        self.saw("")
        if self.result is None:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            return {"error": f"exit {self.process.returncode}: {stderr.strip()[-800:]}"}
        return self.result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def wait_all(consumers: list[Consumer], word: str, timeout: float) -> list[str]:
    """Until every consumer printed ``word``; returns the names of those that did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = [c.name for c in consumers if not c.saw(word)]
        if not missing or any(c.process.poll() is not None for c in consumers):
            return missing
        time.sleep(0.05)
    return [c.name for c in consumers if not c.saw(word)]


def provision(names: list[str], ack_deadline: int) -> None:
    """A topic and a subscription of the same name for each variant."""
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        for name in names:
            topic = publisher.topic_path(PROJECT, name)
            publisher.create_topic(request={"name": topic})
            subscriber.create_subscription(request={
                "name": subscriber.subscription_path(PROJECT, name), "topic": topic,
                "ack_deadline_seconds": ack_deadline,
            })
    finally:
        subscriber.close()
        publisher.stop()


def publish_steadily(
    publisher: Any, topics: list[str], rate: float, count: int, first_seq: int = 0,
    until: Callable[[], bool] | None = None,
) -> tuple[int, float]:
    """Message ``first_seq + i`` to every topic at ``start + i / rate``, for ``count``
    ticks (or until ``until()``). Returns (ticks sent, how far behind the schedule
    the last one was, in seconds)."""
    started = time.monotonic()
    futures, behind, sent = [], 0.0, 0
    for i in range(count):
        if until is not None and until():
            break
        due = started + i / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        behind = max(behind, time.monotonic() - due)
        body = payload(first_seq + i)
        for topic in topics:
            futures.append(publisher.publish(
                topic, body, **ATTRIBUTES, seq=str(first_seq + i), sent_at=repr(time.time())
            ))
        sent += 1
    for future in futures:
        future.result(timeout=60)
    return sent, behind


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (nan if empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(result: dict[str, Any], expected: int, late: float) -> dict[str, Any]:
    """Percentiles over every message published: one never received counts as
    infinitely late (it was later than the wait)."""
    received = sorted(result.get("latencies", []))
    missing = max(0, expected - len(received))
    values = received + [math.inf] * missing
    return {
        "received": len(received), "expected": expected, "missing": missing,
        "redelivered": result.get("deliveries", 0) - len(received),
        "p50": percentile(values, 50), "p99": percentile(values, 99),
        "max": values[-1] if values else math.nan,
        "late": sum(v > late for v in values), "error": result.get("error", ""),
        # The late ones, to the second: how many ack deadlines they waited.
        "late_s": Counter(round(v) for v in received if v > late),
    }


def _ms(seconds: float, tail: float) -> str:
    if math.isnan(seconds):
        return "—"
    if math.isinf(seconds):
        return f"> {tail:g} s"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return "—"
    return "∞" if math.isinf(a) else f"{a / b:.2f}"


def render(rows: dict[str, dict[str, Any]], about: dict[str, str], args: argparse.Namespace,
           info: dict[str, Any]) -> str:
    bare = rows.get("bare", {})
    tail = info["tail_s"]
    verdicts = "\n".join(f"* {p4_verdict(rows, n)['text']}" for n in rows if n != "bare")
    table = [
        f"| variant | received within {tail:g} s | p50 | p99 | max | later than {args.late:g} s "
        "| delivered again | p50 / bare | p99 / bare | max / bare |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if r.get("error") and not r.get("received"):
            table.append(f"| {name} | failed: {r['error']} |" + " |" * 8)
            continue
        table.append(
            f"| {name} | {r['received']:,} / {r['expected']:,} | {_ms(r['p50'], tail)} "
            f"| {_ms(r['p99'], tail)} | {_ms(r['max'], tail)} | **{r['late']}** "
            f"| {r['redelivered']} "
            f"| {_ratio(r['p50'], bare.get('p50', math.nan))} "
            f"| {_ratio(r['p99'], bare.get('p99', math.nan))} "
            f"| {_ratio(r['max'], bare.get('max', math.nan))} |"
        )
    legend = "\n".join(f"* `{name}`: {about[name]}" for name in rows)
    tails = "\n".join(
        f"* `{name}`: " + ", ".join(
            [f"{n} at {s} s" for s, n in sorted(r["late_s"].items())]
            + ([f"{r['missing']} not received"] if r["missing"] else [])
        )
        for name, r in rows.items() if r.get("late")
    ) or "* none"
    return f"""{HEADING}

Produced by one command (it rewrites only this section):

```
{info['command']}
```

* Run: {info['started']:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {linux_python()}, \
shared and noisy
* Load average before the run: {info['loadavg']}
* Broker: {info['broker']} on loopback, one process for the run; a fresh
  topic and subscription per variant (ack deadline {args.ack_deadline} s, no retry policy)
* Load: {args.rate:g} messages/s to each topic for {args.duration:g} s, all variants at
  once, each consumer in its own process; publishing (google's publisher client, in
  the benchmark's process) fell at most {info['behind_s'] * 1000:.0f} ms behind its schedule

{legend}

Latency is from the `publish()` call to the handler's call (publish batching
included); a message delivered more than once counts at its first delivery. The
consumers wait {tail:g} s after the last publish; a message not received by then
counts as later than that (`> {tail:g} s`), in the percentiles and the late count
too. Before issue 9, relay reopened every stream on the emulator every 15 s, and
Google's emulator kept handing some messages to the stream that had just ended:
those came one ack deadline late, or later (`relay-short`, when it is run).

{chr(10).join(table)}

Issue 13's P4 (publish-to-handler p50/p99 at 200 msgs/s no worse than the bare
client + 2 ms), per relay variant:

{verdicts}

Later than {args.late:g} s, to the second:

{tails}
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["consume"]:
        return consume(argv[1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s to each topic")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of publishing")
    parser.add_argument("--ack-deadline", type=int, default=60,
                        help="of every subscription (10..600)")
    parser.add_argument("--late", type=float, default=5.0,
                        help="count messages later than this many seconds")
    parser.add_argument("--lifetime", type=float, default=15.0,
                        help="STREAM_LIFETIME of the relay-short variant")
    parser.add_argument("--tail", type=float, default=None,
                        help="seconds to wait for missing messages after the last publish "
                             f"(default: the ack deadline + {TAIL_MARGIN:g})")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of traffic, not counted, before the measured run")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of {', '.join(variants(15.0))}")
    parser.add_argument("--json", type=Path, help="also write the summaries here, as JSON")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    args = parser.parse_args(argv)
    chosen = [n for n in args.variants.split(",") if n]
    if unknown := set(chosen) - set(variants(args.lifetime)):
        parser.error(f"unknown variant(s) {sorted(unknown)}")
    if not 10 <= args.ack_deadline <= 600 or args.rate <= 0 or args.duration <= 0:
        parser.error("--ack-deadline must be 10..600, --rate and --duration positive")
    if args.tail is not None and args.tail < 0:
        parser.error("--tail must be 0 or more")

    guard_environment()
    from google.cloud import pubsub_v1

    from relay.emulator import running_emulator

    load = loadavg()
    picked = {n: v for n, v in variants(args.lifetime).items() if n in chosen}
    about = {name: text for name, (_, _, text) in picked.items()}
    count = max(1, round(args.rate * args.duration))
    started = dt.datetime.now(dt.timezone.utc)
    run_id = f"{started:%H%M%S}"
    names = {name: f"latency-{name}-{run_id}" for name in about}
    tail = args.ack_deadline + TAIL_MARGIN if args.tail is None else args.tail
    consumers: list[Consumer] = []
    results: dict[str, dict[str, Any]] = {}
    behind = 0.0
    with running_emulator() as emulator:
        broker = emulator.label
        print(f"{broker} on {emulator.address} (pid {emulator.pid})", flush=True)
        provision(list(names.values()), args.ack_deadline)
        publisher = pubsub_v1.PublisherClient()
        topics = [publisher.topic_path(PROJECT, n) for n in names.values()]
        hard_limit = START_TIMEOUT + args.warmup + args.duration + tail + 60
        try:
            for name, (contender, settings, _) in picked.items():
                consumers.append(Consumer(name, [
                    sys.executable, str(Path(__file__).resolve()), "consume", contender,
                    "--subscription", names[name], "--messages", str(count),
                    "--ack-deadline", str(args.ack_deadline), "--settings", json.dumps(settings),
                    "--timeout", str(hard_limit),
                ]))
            not_ready = wait_all(consumers, "ready", START_TIMEOUT)
            # Warm-up traffic (negative ids) until every consumer has had a message
            # and --warmup seconds have passed: streams open, the emulator's JIT warm.
            warm_from = time.monotonic()
            if not not_ready:
                publish_steadily(
                    publisher, topics, args.rate, round(args.rate * START_TIMEOUT),
                    first_seq=-round(args.rate * START_TIMEOUT) - 1,
                    until=lambda: (time.monotonic() - warm_from >= args.warmup
                                   and not wait_all(consumers, "warm", 0)),
                )
            print(f"consumers ready; warm-up {time.monotonic() - warm_from:.1f} s; publishing "
                  f"{count:,} messages to each of {len(topics)} topics at {args.rate:g}/s",
                  flush=True)
            if not not_ready:
                _, behind = publish_steadily(publisher, topics, args.rate, count)
            for consumer in consumers:
                consumer.tell_deadline(tail)
            for consumer in consumers:
                outcome = consumer.wait_result(tail + 60)
                results[consumer.name] = summarise(outcome, count, args.late)
                print(f"{consumer.name}: " + ", ".join(
                    f"{k} {v}" for k, v in results[consumer.name].items() if v != ""), flush=True)
        finally:
            for consumer in consumers:
                consumer.kill()
            publisher.stop()

    shown = [a for i, a in enumerate(argv)
             if a != "--json" and not (i and argv[i - 1] == "--json")]
    command = "uv run python bench/bench_latency.py " + " ".join(shown)
    info = {"command": command.strip(), "started": started, "behind_s": behind,
            "tail_s": tail, "broker": broker, "loadavg": load}
    section = render(results, about, args, info)
    print()
    print(section)
    if args.json:
        args.json.write_text(json.dumps({
            "rows": {n: {k: v for k, v in r.items() if k != "late_s"} for n, r in results.items()},
            "p4": {n: p4_verdict(results, n) for n in results if n != "bare"},
            "loadavg": info["loadavg"], "broker": broker, "command": info["command"],
            "behind_s": behind,
        }, default=str))
    if not args.no_write:
        write_section(DOC, SECTION, section, heading="")
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if any(r["error"] and not r["received"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
