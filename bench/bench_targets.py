"""Three of issue 13's targets, measured side by side: P2 (several streams per
subscription), P5 (one worker, 200 subscriptions) and P4 (latency at 200 msgs/s).

    uv run python bench/bench_targets.py [--messages 40000] [--rounds 2] [--streams 1,2,4]
                                         [--p2-servers google,relay] [--subscriptions 200]
                                         [--latency-duration 20] [--skip p2,p5,p4] [--no-write]

Starts each server P2 runs on (``relay.emulator.running_emulator(kind=...)``,
loopback) and then one for P5; every measured consumer is a fresh process of
this script (``--child``).

* **P2**, on each of ``--p2-servers``: Google's emulator (the issue's
  "emulator", whose streams have a throughput limit each, as the service's do:
  the verdict) and relay's server (reported beside it). Per round (rounds
  interleaved, the order of the stream counts rotated), for each of
  ``--flows`` and ``--streams``: a fresh topic and subscription (ack deadline 60 s),
  ``--messages`` messages published to it first (raw ``Publish`` RPCs of 1,000,
  not measured), then a child runs a ``relay.Worker`` on ``TRANSPORT="grpc"``
  with ``STREAMS_PER_SUBSCRIPTION=K`` and ``FLOW_MAX_MESSAGES=F`` (shared by the
  K streams, ``relay/transports/grpc/stream.py`` ``share``; other settings
  default) whose handler
  notes each message's ``seq``; wall from ``worker.start()`` to the last
  distinct message handled, and from the first to the last. The child's CPU
  (``getrusage``) and the server's (``/proc/PID/stat``) over the same span give
  how many of the machine's cores the two kept busy. Target, on Google's
  emulator: K=4 drains >= 3.5x faster than K=1 (median of per-round ratios).
  Without Google's emulator installed, P2 says so loudly and runs on relay's.
* **P5**: ``--subscriptions`` topics and subscriptions are provisioned first (not
  measured) and one message is published to each before each child starts. The
  child builds a ``relay.Worker`` over that many ``@sub`` handlers (``setup()``
  before the clock starts), then times from ``worker.start()`` to every entry of
  ``worker.status()["subscriptions"]`` reading ``open``, and to a first message
  handled on every subscription (the proof that every stream is really pulling:
  ``status()`` says ``open`` as soon as a stream is started). Then, after 2 s:
  ``threading.active_count()``, the OS thread count (``Threads:`` of
  ``/proc/self/status``), ``VmRSS`` and ``VmHWM``. Contenders: relay on
  ``grpc`` (the default), relay on ``pubsub`` and google-cloud-pubsub's
  ``SubscriberClient`` with one ``subscribe()`` per subscription. Target (grpc):
  <= 64 threads, <= 300 MB RSS, every stream open within 10 s.
* **P4**: runs ``bench/bench_latency.py --rate 200 --duration D --ack-deadline 10``
  (its own server and section of ``docs/performance.md``; relay on grpc, relay on
  pubsub and the bare subscriber at once) and reads its verdict back.

``/proc/loadavg`` is recorded before each measured run. Prints a table and
rewrites the ``bench_targets`` section of ``docs/performance.md`` (and, through
``bench_latency.py``, its section). Figures only; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    ATTRIBUTES,
    PROJECT,
    command_line,
    cpu_seconds,
    emit,
    failure,
    guard_environment,
    linux_python,
    loadavg,
    median,
    payload,
    proc_cpu_seconds,
    revision,
    status_kb,
    versions,
    write_section,
)

DOC = ROOT / "docs" / "performance.md"
SECTION, HEADING = "bench_targets", "## Issue 13: several streams, 200 subscriptions, latency"
ACK_DEADLINE = 60
P2_TARGET = 3.5
#: The servers P2 runs on; the first is the issue's "emulator", whose figures are P2's verdict.
P2_SERVERS = {"google": "Google's Pub/Sub emulator", "relay": "relay's Pub/Sub server"}
P5_THREADS, P5_RSS_MB, P5_OPEN_S = 64, 300.0, 10.0
P5_CONTENDERS = ("grpc", "pubsub", "bare")
#: Seconds a P5 child waits after every subscription had its message, before counting.
SETTLE_S = 2.0


# ------------------------------------------------------------------ both children
def relay_settings(transport: str, **extra: Any) -> Any:
    import relay

    return relay.Settings.load({"GC_PROJECT_ID": PROJECT, "TRANSPORT": transport,
                                "ACK_DEADLINE": ACK_DEADLINE, "DEFAULT_RETRY_POLICY": None,
                                **extra}, environ={})


def child_p2(args: argparse.Namespace) -> dict[str, Any]:
    """Drain ``--messages`` from one subscription with ``--streams`` streams."""
    import relay

    n = args.messages
    lock, done = threading.Lock(), threading.Event()
    seqs: set[int] = set()
    marks: dict[str, float] = {}
    deliveries = [0]

    @relay.sub(args.subscription)  # topic and subscription share the name
    def handler(data: Any, **attrs: str) -> None:
        now = time.perf_counter()
        with lock:
            deliveries[0] += 1
            marks.setdefault("first", now)
            seqs.add(data["seq"])
            if len(seqs) >= n and "last" not in marks:
                marks["last"] = now
                done.set()

    worker = relay.Worker([handler], settings=relay_settings(
        "grpc", STREAMS_PER_SUBSCRIPTION=args.streams, FLOW_MAX_MESSAGES=args.flow))
    worker.setup()  # the subscription exists and matches: this changes nothing
    print("start", flush=True)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    worker.start()
    ok = done.wait(args.timeout)
    end = marks.get("last", time.perf_counter())
    cpu = cpu_seconds() - cpu0
    wall = end - t0
    steady = end - marks.get("first", t0)
    out: dict[str, Any] = {
        "ok": ok, "received": len(seqs), "deliveries": deliveries[0], "wall_s": wall,
        "cpu_s": cpu, "rate": len(seqs) / wall if wall else 0.0,
        "steady_rate": (len(seqs) - 1) / steady if steady > 0 else 0.0,
        "first_s": marks.get("first", end) - t0, "threads": threading.active_count(),
        "peak_mb": status_kb("VmHWM") / 1024}
    if not ok:
        out["error"] = f"{len(seqs):,} of {n:,} messages within {args.timeout:g} s"
    emit(out)
    worker.stop(timeout=10)
    return out


def thread_kinds() -> dict[str, int]:
    """Threads by name, digits dropped (``ThreadPoolExecutor-3_0`` -> ``ThreadPoolExecutor-_``)."""
    kinds = Counter("".join(c for c in t.name if not c.isdigit()) for t in threading.enumerate())
    return dict(kinds.most_common(6))


def child_p5(args: argparse.Namespace) -> dict[str, Any]:
    """One consumer over ``--count`` subscriptions: open times, threads, RSS."""
    names = [f"{args.prefix}-{i:03d}" for i in range(args.count)]
    lock, all_in = threading.Lock(), threading.Event()
    got: set[str] = set()

    def arrived(name: str) -> None:
        with lock:
            got.add(name)
            if len(got) >= len(names):
                all_in.set()

    out: dict[str, Any] = {"ok": False, "base_threads": status_kb("Threads")}
    status_open: float | None = None
    stop: Callable[[], Any]
    if args.transport == "bare":
        from google.cloud import pubsub_v1

        client = pubsub_v1.SubscriberClient()

        def callback_for(name: str) -> Callable[[Any], None]:
            def callback(message: Any) -> None:
                message.ack()
                arrived(name)
            return callback

        out["ready_mb"] = status_kb("VmRSS") / 1024
        t0 = time.perf_counter()
        futures = [client.subscribe(client.subscription_path(PROJECT, name), callback_for(name))
                   for name in names]
        started = time.perf_counter() - t0

        def stop() -> None:
            for future in futures:
                future.cancel()
            client.close()
    else:
        import relay

        def handler_for(name: str) -> Any:
            def handler(data: Any, **attrs: str) -> None:
                arrived(name)
            handler.__name__ = f"handle_{name.replace('-', '_')}"
            return relay.sub(name)(handler)

        worker = relay.Worker([handler_for(name) for name in names],
                              settings=relay_settings(args.transport))
        worker.setup()  # everything exists and matches: this changes nothing
        out["ready_mb"] = status_kb("VmRSS") / 1024
        t0 = time.perf_counter()
        worker.start()
        started = time.perf_counter() - t0
        deadline = t0 + args.timeout
        while time.perf_counter() < deadline:
            subs = worker.status()["subscriptions"]
            if len(subs) == len(names) and all(s["state"] == "open" for s in subs):
                status_open = time.perf_counter() - t0
                break
            time.sleep(0.01)
        out["states"] = dict(Counter(s["state"] for s in worker.status()["subscriptions"]))

        def stop() -> None:
            worker.stop(timeout=5)
    ok = all_in.wait(max(0.0, t0 + args.timeout - time.perf_counter()))
    delivered = time.perf_counter() - t0 if ok else None
    time.sleep(SETTLE_S)
    out.update(ok=ok, start_s=started, status_open_s=status_open, delivered_s=delivered,
               subscriptions_delivered=len(got), py_threads=threading.active_count(),
               os_threads=status_kb("Threads"), rss_mb=status_kb("VmRSS") / 1024,
               hwm_mb=status_kb("VmHWM") / 1024, kinds=thread_kinds())
    if not ok:
        out["error"] = (f"{len(got)} of {len(names)} subscriptions delivered within "
                        f"{args.timeout:g} s")
    emit(out)
    with contextlib.suppress(Exception):
        stop()
    return out


def child_server(args: argparse.Namespace) -> None:
    """relay's server with ``max_workers=--workers``, until stdin closes."""
    from relay.server.server import PubSubServer

    server = PubSubServer("127.0.0.1", 0, max_workers=args.workers).start()
    emit({"address": server.address})
    sys.stdin.read()
    server.stop(grace=1.0)


class WideServer:
    """relay's server in a process of its own, as ``relay.emulator`` starts it
    (``python -m relay.server``), but with ``PubSubServer(max_workers=N)`` (what
    that command's ``--max-workers N`` sets; ``relay.emulator`` starts it with
    the default, 1024)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.label = f"relay's Pub/Sub server (`PubSubServer(max_workers={workers})`)"

    def __enter__(self) -> WideServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", "server", "--workers",
             str(self.workers)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=guard_environment(dict(os.environ)))
        assert self.proc.stdout is not None
        self.address = json.loads(self.proc.stdout.readline())["address"]
        self.pid = self.proc.pid
        self.previous = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = self.address
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = self.previous
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


# ------------------------------------------------------------------------ driver
class Admin:
    """Topics, subscriptions and raw batched publishing on the server."""

    def __init__(self, address: str) -> None:
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1 import types

        self.publisher, self.subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        self.types = types
        self.channel = grpc.insecure_channel(address)
        self.publish_rpc = self.channel.unary_unary(
            "/google.pubsub.v1.Publisher/Publish",
            request_serializer=types.PublishRequest.pb().SerializeToString,
            response_deserializer=types.PublishResponse.pb().FromString)

    def create(self, name: str) -> None:
        topic = self.publisher.topic_path(PROJECT, name)
        self.publisher.create_topic(request={"name": topic})
        self.subscriber.create_subscription(request={
            "name": self.subscriber.subscription_path(PROJECT, name), "topic": topic,
            "ack_deadline_seconds": ACK_DEADLINE})

    def delete(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.subscriber.delete_subscription(
                request={"subscription": self.subscriber.subscription_path(PROJECT, name)})
        with contextlib.suppress(Exception):
            self.publisher.delete_topic(request={"topic": self.publisher.topic_path(PROJECT, name)})

    def publish(self, name: str, bodies: list[bytes]) -> None:
        message = self.types.PubsubMessage.pb()
        request = self.types.PublishRequest.pb()
        path = self.publisher.topic_path(PROJECT, name)
        for at in range(0, len(bodies), 1000):
            chunk = bodies[at:at + 1000]
            self.publish_rpc(request(topic=path, messages=[
                message(data=b, attributes=ATTRIBUTES) for b in chunk]), timeout=60)

    def close(self) -> None:
        self.channel.close()
        self.subscriber.close()
        self.publisher.stop()


def child_env(address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(PUBSUB_EMULATOR_HOST=address)
    return guard_environment(env)


def run_child(cmd: list[str], address: str, server_pid: int | None, timeout: float
              ) -> dict[str, Any]:
    """Run a child; the server's CPU from its ``start`` line to its JSON line."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *cmd], cwd=ROOT,
                            env=child_env(address), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    result: dict[str, Any] | None = None
    server0 = server1 = proc_cpu_seconds(server_pid)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("start"):
                server0 = proc_cpu_seconds(server_pid)
            elif line.startswith("{"):
                server1 = proc_cpu_seconds(server_pid)
                result = json.loads(line)
        proc.wait(30)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    if result is None:
        stderr = proc.stderr.read() if proc.stderr else ""
        return {"ok": False, "error": f"exit {proc.returncode}: {stderr.strip()[-600:]}"}
    result["server_cpu_s"] = server1 - server0
    return result


P2Key = tuple[int, int]  # (FLOW_MAX_MESSAGES, STREAMS_PER_SUBSCRIPTION)


def run_p2(args: argparse.Namespace, server: Any, admin: Admin, tag: str,
           bodies: list[bytes]) -> list[dict[P2Key, dict[str, Any]]]:
    keys = [(f, int(k)) for f in (int(x) for x in args.flows.split(","))
            for k in args.streams.split(",")]
    rounds: list[dict[P2Key, dict[str, Any]]] = []
    for rnd in range(args.rounds):
        shift = rnd % len(keys)
        results: dict[P2Key, dict[str, Any]] = {}
        for flow, k in keys[shift:] + keys[:shift]:
            name = f"p2-{tag}-{rnd}-{flow}-{k}"
            admin.create(name)
            admin.publish(name, bodies)
            load = loadavg()
            r = run_child(["--child", "p2", "--subscription", name, "--streams", str(k),
                           "--flow", str(flow), "--messages", str(args.messages),
                           "--timeout", str(args.timeout)],
                          server.address, server.pid, args.timeout + 60)
            r["loadavg"] = load
            if r.get("ok"):
                r["server_us"] = 1e6 * r["server_cpu_s"] / args.messages
                r["child_us"] = 1e6 * r["cpu_s"] / args.messages
                r["cores"] = (r["cpu_s"] + r["server_cpu_s"]) / r["wall_s"]
                print(f"P2 round {rnd} flow={flow} streams={k}: {r['rate']:8,.0f} msgs/s wall "
                      f"({r['steady_rate']:,.0f} first-to-last), first message after "
                      f"{r['first_s']:.2f} s; worker CPU {r['child_us']:.1f} µs/msg, server "
                      f"{r['server_us']:.1f} µs/msg, cores busy {r['cores']:.2f}; "
                      f"load {load}", flush=True)
            else:
                print(f"P2 round {rnd} flow={flow} streams={k}: FAILED {r.get('error')}",
                      flush=True)
            admin.delete(name)
            results[(flow, k)] = r
        rounds.append(results)
    return rounds


def run_p2_on(kind: str, args: argparse.Namespace, tag: str, bodies: list[bytes]
              ) -> dict[str, Any]:
    """P2 on a server of ``kind`` it starts: ``summary`` and ``loads``, or ``error``."""
    from relay.emulator import EmulatorError, running_emulator

    try:
        with running_emulator(kind=kind) as server:
            print(f"P2 on {server.label} at {server.address} (pid {server.pid})", flush=True)
            admin = Admin(server.address)
            try:
                rounds = run_p2(args, server, admin, f"{tag}-{kind}", bodies)
            finally:
                admin.close()
    except EmulatorError as exc:
        loud = f"{'!' * 78}\nP2 NOT MEASURED on {P2_SERVERS[kind]}: {exc}\n{'!' * 78}"
        for stream in (sys.stdout, sys.stderr):
            print(loud, file=stream, flush=True)
        return {"error": str(exc)}
    summary = p2_summary(rounds)
    return {"summary": summary, "one": one_stream_rate(summary),
            "loads": [f"{k[1]}@{k[0]}: {r[k]['loadavg']}" for r in rounds for k in r]}


def run_p5(args: argparse.Namespace, server: Any, admin: Admin, tag: str
           ) -> list[dict[str, dict[str, Any]]]:
    prefix = f"p5-{tag}"
    names = [f"{prefix}-{i:03d}" for i in range(args.subscriptions)]
    t0 = time.monotonic()
    for name in names:
        admin.create(name)
    print(f"P5: {len(names)} topics and subscriptions provisioned in "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    contenders = [c for c in P5_CONTENDERS if c in args.p5_contenders.split(",")]
    rounds: list[dict[str, dict[str, Any]]] = []
    for rnd in range(args.p5_rounds):
        results: dict[str, dict[str, Any]] = {}
        shift = rnd % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            for i, name in enumerate(names):
                admin.publish(name, [payload(i)])
            load = loadavg()
            r = run_child(["--child", "p5", "--transport", contender, "--prefix", prefix,
                           "--count", str(len(names)), "--timeout", str(args.p5_timeout)],
                          server.address, server.pid, args.p5_timeout + 90)
            r["loadavg"] = load
            print(f"P5 round {rnd} {contender}: " + (
                f"start() {r['start_s']:.2f} s, status open {fmt_s(r.get('status_open_s'))}, "
                f"every subscription delivered {fmt_s(r.get('delivered_s'))} "
                f"({r['subscriptions_delivered']} of {len(names)}); threads "
                f"{r['os_threads']} (Python {r['py_threads']}), RSS {r['rss_mb']:.0f} MB, "
                f"peak {r['hwm_mb']:.0f} MB; {r.get('kinds')}; load {load}"
                if "os_threads" in r else f"FAILED {r.get('error')}"), flush=True)
            # Drain what a failed run left, so the next contender starts from one each.
            with contextlib.suppress(Exception):
                for name in names:
                    path = admin.subscriber.subscription_path(PROJECT, name)
                    admin.subscriber.seek(request={"subscription": path, "time": dt.datetime.now(
                        dt.timezone.utc) + dt.timedelta(seconds=1)})
            results[contender] = r
        rounds.append(results)
    for name in names:
        admin.delete(name)
    return rounds


def run_p4(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "latency.json"
        cmd = [sys.executable, str(HERE / "bench_latency.py"), "--rate", "200", "--duration",
               f"{args.latency_duration:g}", "--ack-deadline", "10", "--json", str(out)]
        if args.no_write:
            cmd.append("--no-write")
        load = loadavg()
        print("P4: " + " ".join(cmd[1:]), flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                              env=guard_environment(dict(os.environ)), timeout=600)
        if not out.exists():
            return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
        result: dict[str, Any] = json.loads(out.read_text())
    result["loadavg_driver"] = load
    for text in result.get("p4", {}).values():
        print(text["text"], flush=True)
    return result


# ---------------------------------------------------------------------- render
def fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def p2_summary(rounds: list[dict[P2Key, dict[str, Any]]]) -> dict[P2Key, dict[str, Any]]:
    keys = sorted(rounds[0]) if rounds else []
    summary: dict[P2Key, dict[str, Any]] = {}
    for k in keys:
        one = (k[0], min(s for f, s in keys if f == k[0]))
        ok = [r[k] for r in rounds if r[k].get("ok")]
        ratios = [r[k]["rate"] / r[one]["rate"] for r in rounds
                  if r[k].get("ok") and r[one].get("ok")]
        summary[k] = {key: median(x[key] for x in ok) for key in
                      ("rate", "steady_rate", "child_us", "server_us", "cores", "first_s")}
        summary[k].update(ratio=median(ratios), runs=len(ok),
                          each=[r[k]["rate"] if r[k].get("ok") else None for r in rounds])
    return summary


def p2_table(summary: dict[P2Key, dict[str, Any]]) -> str:
    lines = ["| `FLOW_MAX_MESSAGES` | streams | msgs/s, start to last (rounds) | / 1 stream "
             "| msgs/s, first to last | per stream | worker CPU µs/msg | server CPU µs/msg "
             f"| cores busy (of {os.cpu_count()}) | first message after |", "|---" * 10 + "|"]
    for (flow, k), s in summary.items():
        if not s["runs"]:
            lines.append(f"| {flow:,} | {k} | failed |" + " |" * 7)
            continue
        each = ", ".join("failed" if v is None else f"{v:,.0f}" for v in s["each"])
        lines.append(f"| {flow:,} | {k} | **{s['rate']:,.0f}** ({each}) | {s['ratio']:.2f} "
                     f"| {s['steady_rate']:,.0f} | {s['rate'] / k:,.0f} | {s['child_us']:.1f} "
                     f"| {s['server_us']:.1f} | {s['cores']:.2f} | {s['first_s']:.2f} s |")
    return "\n".join(lines)


def p5_summary(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in rounds[0] if rounds else []:
        runs = [r[name] for r in rounds if "os_threads" in r[name]]
        if not runs:
            out[name] = {"error": rounds[0][name].get("error")}
            continue
        row: dict[str, Any] = {}
        for key in ("start_s", "status_open_s", "delivered_s"):
            vals = [x[key] for x in runs if x.get(key) is not None]
            row[key] = median(vals) if len(vals) == len(runs) else None
        for key in ("os_threads", "py_threads", "rss_mb", "hwm_mb", "ready_mb"):
            row[key] = max(x[key] for x in runs)
        row.update(kinds=runs[-1].get("kinds"), runs=len(runs), ok=all(x["ok"] for x in runs),
                   loadavg=[x["loadavg"] for x in runs])
        out[name] = row
    return out


P5_LABELS = {"grpc": "relay, `TRANSPORT=\"grpc\"` (default)",
             "pubsub": "relay, `TRANSPORT=\"pubsub\"`",
             "bare": "google-cloud-pubsub, 200 `subscribe()`"}


def p5_table(summary: dict[str, dict[str, Any]], count: int) -> str:
    lines = [f"| consumer of {count} subscriptions | `start()` returns | all `open` in "
             "`status()` | a message handled on every subscription | OS threads (Python) "
             "| RSS after, MB | peak RSS, MB | most common threads |", "|---" * 8 + "|"]
    for name, s in summary.items():
        if "error" in s:
            lines.append(f"| {P5_LABELS[name]} | failed: {s['error']} |" + " |" * 6)
            continue
        kinds = ", ".join(f"`{k}` {v}" for k, v in (s["kinds"] or {}).items())
        status = "n/a" if name == "bare" else fmt_s(s["status_open_s"])
        lines.append(f"| {P5_LABELS[name]} | {fmt_s(s['start_s'])} | {status} "
                     f"| {fmt_s(s['delivered_s'])} | **{s['os_threads']:,}** "
                     f"({s['py_threads']:,}) | {s['rss_mb']:.0f} | {s['hwm_mb']:.0f} "
                     f"| {kinds} |")
    return "\n".join(lines)


def p2_pairs(p2: dict[P2Key, dict[str, Any]]) -> list[tuple[P2Key, P2Key]]:
    """(one stream, most streams) for each flow setting."""
    pairs = []
    for flow in sorted({f for f, _ in p2}):
        counts = [k for f, k in p2 if f == flow]
        pairs.append(((flow, min(counts)), (flow, max(counts))))
    return pairs


def verdicts(p2: dict[str, dict[str, Any]] | None, p5: dict[str, dict[str, Any]] | None,
             p4: dict[str, Any] | None, args: argparse.Namespace) -> list[list[str]]:
    rows: list[list[str]] = []
    google, mine = (p2 or {}).get("google", {}), (p2 or {}).get("relay", {})
    if "error" in google:
        rows.append(["P2", "one subscription, several streams vs 1, on Google's emulator",
                     "not measured: Google's emulator did not start (see P2)", "—",
                     "NOT MEASURED"])
    for one, top in p2_pairs(google.get("summary", {})):
        a, b = google["summary"][one], google["summary"][top]
        what = (f"one subscription on Google's emulator, {top[1]} streams vs {one[1]} (grpc "
                f"transport), `FLOW_MAX_MESSAGES={one[0]}`"
                f"{' (the default)' if one[0] == 100 else ''}, draining {args.messages:,}")
        if not a["runs"] or not b["runs"]:
            rows.append(["P2", what, "failed", "—", "—"])
            continue
        rows.append(["P2", what, f"{b['rate']:,.0f} vs {a['rate']:,.0f} msgs/s",
                     f"{b['ratio']:.2f}x (target >= {P2_TARGET}x)",
                     "MET" if b["ratio"] >= P2_TARGET else "NOT MET"])
    readings = p2_readings(mine.get("summary", {}))
    if readings:
        mine_one, google_one = mine.get("one"), google.get("one")
        than = (f" ({mine_one / google_one:.0f}x a stream of Google's emulator)"
                if mine_one and google_one else "")
        rows.append([
            "P2, beside", f"the same on relay's server, {readings[0][1][1]} streams vs 1",
            "; ".join(f"{b['rate']:,.0f} vs {a['rate']:,.0f} msgs/s at {one[0]:,}"
                      for one, _, a, b, _, _ in readings),
            "; ".join(f"{b['ratio']:.2f}x at {one[0]:,}" for one, _, _, b, _, _ in readings)
            + f". One stream already drains {mine_one or 0:,.0f} msgs/s{than}; what bounds it: "
            + "; ".join(f"{name} at {one[0]:,}" for one, _, _, _, name, _ in readings)
            + ("" if any(r[4] == "the stream" for r in readings) else
               " (this server has no per-stream limit for several streams to pass)"),
            "not P2's measure"])
    if p5 and "grpc" in p5 and "error" not in p5["grpc"]:
        g = p5["grpc"]
        delivered = g["delivered_s"]
        met = (g["os_threads"] <= P5_THREADS and g["hwm_mb"] <= P5_RSS_MB
               and delivered is not None and delivered <= P5_OPEN_S)
        rows.append(["P5", f"one relay worker (grpc), {args.subscriptions} subscriptions",
                     f"{g['os_threads']} OS threads, peak RSS {g['hwm_mb']:.0f} MB, every "
                     f"stream delivering after {fmt_s(delivered)}",
                     f"threads {g['os_threads'] / P5_THREADS:.2f}x the limit of {P5_THREADS}, "
                     f"RSS {g['hwm_mb'] / P5_RSS_MB:.2f}x {P5_RSS_MB:.0f} MB, open "
                     f"{(delivered or float('inf')) / P5_OPEN_S:.2f}x {P5_OPEN_S:g} s",
                     "MET" if met else "NOT MET"])
    if p4 and "p4" in p4 and "relay-grpc" in p4["p4"]:
        v = p4["p4"]["relay-grpc"]
        rows_ = p4["rows"]
        g, b = rows_.get("relay-grpc", {}), rows_.get("bare", {})
        over = v.get("over_ms", {})
        rows.append(["P4", f"publish-to-handler latency at 200 msgs/s, relay (grpc) vs bare, "
                     f"{args.latency_duration:g} s",
                     f"p50 {g['p50'] * 1000:.1f} / bare {b['p50'] * 1000:.1f} ms, p99 "
                     f"{g['p99'] * 1000:.1f} / bare {b['p99'] * 1000:.1f} ms",
                     f"p50 {over.get('p50', float('nan')):+.1f} ms, p99 "
                     f"{over.get('p99', float('nan')):+.1f} ms (limit +2 ms)",
                     "MET" if v["met"] else ("NOT MET" if v["met"] is False else "—")])
    return rows


def verdict_table(rows: list[list[str]]) -> str:
    lines = ["| target | what | figure | against the target | verdict |", "|---" * 5 + "|"]
    lines += ["| " + " | ".join([*r[:-1], f"**{r[-1]}**"]) + " |" for r in rows]
    return "\n".join(lines)


def p4_table(p4: dict[str, Any]) -> str:
    lines = ["| variant | received | p50 | p99 | max | later than 5 s |", "|---" * 6 + "|"]
    for name, r in p4.get("rows", {}).items():
        def ms(v: Any) -> str:
            return "—" if not isinstance(v, float) else (
                "missing" if v == float("inf") else f"{v * 1000:,.1f} ms")
        lines.append(f"| {name} | {r.get('received', 0):,} / {r.get('expected', 0):,} "
                     f"| {ms(r.get('p50'))} | {ms(r.get('p99'))} | {ms(r.get('max'))} "
                     f"| {r.get('late', '—')} |")
    return "\n".join(lines)


def render(args: argparse.Namespace, info: dict[str, Any]) -> str:
    found = versions("relay-pubsub", "google-cloud-pubsub", "grpcio", "protobuf")
    parts = [f"""{HEADING}

Written by one command (it rewrites only this section; P4's run also rewrites
`bench_latency`'s section above):

```
{info['command']}
```

* Run: {info['started']:%Y-%m-%d %H:%M} UTC, {info['wall_s'] / 60:.1f} minutes; relay at
  commit {info['revision']} (working tree as it was, other work in progress)
* Machine: **{os.cpu_count()} cores, shared** with another engineer's benchmarks and
  other work (load average before the run: {info['loadavg']}; before each measured
  run: in the notes below); {linux_python()}
* Versions: {found}
* Brokers, each on loopback in a process of its own: for P2, {' and '.join(
  P2_SERVERS[k] for k in info.get('p2', {})) or '—'};
  for P5, {info.get('p5_server', '—')}; `bench_latency.py` starts its own for P4.

{verdict_table(info['verdicts'])}
"""]
    if info.get("p2"):
        flows = [int(f) for f in args.flows.split(",")]
        most = max(int(k) for k in args.streams.split(","))
        parts.append(f"""### P2: one subscription, several streams

{args.messages:,} messages (`bench/_common.payload(i)`, ~300 bytes of JSON, 2
attributes) published to a fresh subscription before each run; a fresh
`relay.Worker` process on `TRANSPORT="grpc"` with `STREAMS_PER_SUBSCRIPTION`
= {args.streams.replace(',', ', ')} and `FLOW_MAX_MESSAGES` = {', '.join(f'{f:,}' for f in flows)}
(the default is 100), which a subscription's streams share (each of {most} gets
{' or '.join(f'{-(-f // most):,}' for f in flows)}: `share` in `relay/transports/grpc/stream.py`),
everything else default (`CONCURRENCY=16`, `LoggingMiddleware` at WARNING)
drains it; the handler only notes the message's `seq`. Two servers, each
started for its part in a process of its own on loopback: Google's emulator
(Java), the issue's "emulator", whose figures are P2's verdict, and relay's
server beside it. {args.rounds} interleaved rounds per server, order rotated;
bold: median; "/ 1 stream": median of per-round ratios; "per stream": msgs/s
divided by the stream count; "cores busy": the worker's and the server's CPU
over the drain, divided by its wall time.
""")
        for kind, p2 in info["p2"].items():
            role = "P2's measure" if kind == "google" else "beside it, not P2's measure"
            parts.append(f"#### On {P2_SERVERS[kind]} ({role})\n\n" + (
                f"**Not measured: {p2['error']}**\n" if "error" in p2 else
                f"Load average before each run: {', '.join(p2['loads'])}.\n\n"
                f"{p2_table(p2['summary'])}\n\n{p2['why']}\n"))
    if info.get("p5"):
        parts.append(f"""### P5: one consumer, {args.subscriptions} subscriptions

{args.subscriptions} topics and subscriptions provisioned first, one message
published to each before each run; a fresh process per consumer ({args.p5_rounds}
round(s), order rotated); the consumer's `setup()` (or client creation) comes
before the clock starts. "All `open` in `status()`": every subscription's
`state` is `open` (the worker sets it as it starts the stream, so this is
bookkeeping, not proof of a pulling stream); "a message handled on every
subscription" is that proof, and the figure the verdict uses. Threads and RSS
are counted {SETTLE_S:g} s after that (the most of the rounds). Load average
before each run: {'; '.join(f"{n} {', '.join(s.get('loadavg', []))}"
                           for n, s in info['p5'].items())}.

{p5_table(info['p5'], args.subscriptions)}

{info['p5_note']}
""")
    if info.get("p4"):
        p4 = info["p4"]
        parts.append(f"""### P4: latency at 200 msgs/s

From `bench_latency.py`'s run (its section above has the details): the three
consumers at once, each on its own topic, {args.latency_duration:g} s at 200
messages/s, ack deadline 10 s. Load average before it: {p4.get('loadavg', '?')}.

{p4_table(p4)}

{chr(10).join('* ' + v['text'] for v in p4.get('p4', {}).values())}
""")
    elif info.get("p4_error"):
        parts.append(f"### P4\n\nbench_latency.py failed: {info['p4_error']}\n")
    return "\n".join(parts)


def one_stream_rate(p2: dict[P2Key, dict[str, Any]]) -> float | None:
    """The fastest drain by one stream (any ``FLOW_MAX_MESSAGES``), or None."""
    rates = [s["rate"] for (_, k), s in p2.items() if k == 1 and s["runs"]]
    return max(rates) if rates else None


Reading = tuple[P2Key, P2Key, dict[str, Any], dict[str, Any], str, str]


def cpu_limit(x: dict[str, Any], cores: int) -> tuple[str, str] | None:
    """The CPU that bounds a drain with figures ``x``, if one is (nearly) full."""
    w, s = (x["rate"] * x[us] / 1e6 for us in ("child_us", "server_us"))
    if x["cores"] >= 0.85 * cores:
        return "the machine's cores", f"{x['cores']:.2f} of the {cores} cores were busy"
    if w >= 0.7:
        return "the worker process", (
            f"the worker used {w:.2f} of a core at {x['child_us']:.1f} µs/msg, and one "
            f"process (one GIL) cannot take more than ~{1e6 / x['child_us']:,.0f} msgs/s")
    if s >= 0.7:
        return "the server", f"the server used {s:.2f} of a core ({x['server_us']:.1f} µs/msg)"
    return None


def p2_readings(p2: dict[P2Key, dict[str, Any]]) -> list[Reading]:
    """Per flow setting: (one stream, most streams, their figures, what bounds the
    drain, the sentence that shows it from the figures)."""
    cores = os.cpu_count() or 1
    pairs = [(o, t) for o, t in p2_pairs(p2) if p2[o]["runs"] and p2[t]["runs"]]
    top_flow = max((o[0] for o, _ in pairs), default=0)
    out = []
    for one, top in pairs:
        a, b, k, flow = p2[one], p2[top], top[1], one[0]
        gain = p2[(top_flow, one[1])]["rate"] / a["rate"] if flow < top_flow else 1.0
        helps = b["ratio"] >= 1.5
        limit = cpu_limit(b if helps else a, cores)
        if b["ratio"] >= 0.8 * k and a["cores"] < 0.8 * cores:
            name, why = "the stream", (
                f"Each of {k} streams delivered {b['rate'] / k:,.0f} msgs/s, against "
                f"{a['rate']:,.0f} for one alone, while one stream kept {a['cores']:.2f} of "
                f"the {cores} cores busy: a limit per stream, in the server, not CPU, bounds "
                f"the drain, and streams add up as they do on Pub/Sub.")
        elif limit:
            name, why = limit[0], (
                f"{f'Streams help, less than {k}x' if helps else 'More streams add little'} "
                f"({b['ratio']:.2f}x with {k}): "
                f"with {k if helps else 1} stream{'s' if helps else ''} {limit[1]}: "
                f"{limit[0]}, not the stream, is the bound.")
        elif gain >= 1.5 and not helps:
            name, why = "flow control", (
                f"The streams of a subscription share `FLOW_MAX_MESSAGES` (each of {k} gets "
                f"{-(-flow // k)}), so it never holds more than {flow} unsettled messages "
                f"whatever the stream count; at {a['rate']:,.0f} msgs/s a message holds its "
                f"slot {1000 * flow / a['rate']:.1f} ms on average at most (delivery, "
                f"handling, the ack batch's wait of up to 5 ms, `FLUSH_INTERVAL` in "
                f"`relay/transports/grpc/settle.py`, the ack's round trip), and "
                f"{top_flow:,} on one stream drains {gain:.1f}x faster: flow control, not the "
                f"stream, is the bound.")
        else:
            name, why = "neither CPU nor the stream", (
                f"No process was near a whole core and {k} streams gave {b['ratio']:.2f}x: "
                f"neither CPU nor the stream is the bound.")
        out.append((one, top, a, b, name, why))
    return out


def p2_explain(kind: str, servers: dict[str, dict[str, Any]]) -> str:
    """What bounds the drain on ``kind``'s server, from the figures of this run."""
    readings = p2_readings(servers[kind]["summary"])
    if not readings:
        return ""
    lines = []
    for one, top, a, b, _, why in readings:
        w1, s1 = (a["rate"] * a[us] / 1e6 for us in ("child_us", "server_us"))
        lines.append(
            f"* `FLOW_MAX_MESSAGES={one[0]:,}`: 1 stream {a['rate']:,.0f} msgs/s, {top[1]} "
            f"streams {b['rate']:,.0f} ({b['ratio']:.2f}x). With 1 stream the worker used "
            f"{w1:.2f} of a core ({a['child_us']:.1f} µs/msg) and the server {s1:.2f} "
            f"({a['server_us']:.1f} µs/msg); {a['cores']:.2f} and {b['cores']:.2f} of the "
            f"{os.cpu_count()} cores were busy with 1 and {top[1]} streams. {why}")
    if len(readings) > 1:
        lo, hi = readings[0], readings[-1]
        gain = hi[2]["rate"] / lo[2]["rate"]
        tail = (f", against {lo[3]['ratio']:.2f}x from {lo[1][1]} streams: on this server "
                f"the flow-control window, not the stream, bounds a subscription"
                if gain >= 1.5 else ": flow control does not bound a stream on this server"
                if gain < 1.2 else "")
        lines.append(f"* Raising `FLOW_MAX_MESSAGES` from {lo[0][0]} to {hi[0][0]:,} on one "
                     f"stream gives {gain:.2f}x{tail}.")
    per_stream = all(r[4] == "the stream" for r in readings)
    if kind == "google":
        per = median(r[3]["rate"] / r[1][1] for r in readings)
        lines.append(
            "* Google's emulator is the issue's \"emulator\": " + (
                f"like the service, it limits each stream (~{per:,.0f} msgs/s here), so a "
                "subscription drains faster with more streams, which is what P2 measures."
                if per_stream else "its streams did not show a per-stream limit in this run "
                "(above), so P2's ratio here is not the stream count's doing alone."))
    else:
        mine, google = servers[kind]["one"], servers.get("google", {}).get("one")
        than = (f", {mine / google:.0f}x a stream of Google's emulator ({google:,.0f})"
                if mine and google else "")
        lines.append(
            "* relay's server has no per-stream limit: a subscription's streams share one "
            "lock (`Queue.cond`, `relay/server/queue.py`), held briefly by each take, ack and "
            f"modack. One stream on it drained up to {mine or 0:,.0f} msgs/s{than}" + (
                "; this run found the stream the bound anyway (above)." if per_stream else
                ", so the limit several streams are for is not there to pass and P2 cannot "
                "show on it: it is not P2's measure."))
    return "\n".join(lines)


def p5_explain(p5: dict[str, dict[str, Any]]) -> str:
    notes = []
    for name, s in p5.items():
        if "error" in s:
            notes.append(f"{P5_LABELS[name]} failed: {s['error']}.")
    g, p = p5.get("grpc", {}), p5.get("pubsub", {})
    if "os_threads" in g and "os_threads" in p:
        notes.append(f"relay on its own transport runs {p['os_threads'] / g['os_threads']:.0f}x "
                     f"fewer threads than on google's client ({g['os_threads']} against "
                     f"{p['os_threads']:,}) and holds {g['hwm_mb']:.0f} MB at its peak against "
                     f"{p['hwm_mb']:.0f} MB.")
    return " ".join(notes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000, help="P2: messages per drain")
    parser.add_argument("--rounds", type=int, default=2, help="P2: interleaved rounds")
    parser.add_argument("--streams", default="1,2,4", help="P2: stream counts, the first is 1")
    parser.add_argument("--flows", default="100,1000",
                        help="P2: FLOW_MAX_MESSAGES values (shared by a subscription's streams)")
    parser.add_argument("--p2-servers", default=",".join(P2_SERVERS),
                        help="P2: the servers to drain on (google: the verdict; relay: beside)")
    parser.add_argument("--flow", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120.0, help="P2: seconds per drain")
    parser.add_argument("--subscriptions", type=int, default=200, help="P5")
    parser.add_argument("--p5-rounds", type=int, default=1)
    parser.add_argument("--p5-contenders", default=",".join(P5_CONTENDERS))
    parser.add_argument("--p5-timeout", type=float, default=60.0)
    parser.add_argument("--latency-duration", type=float, default=20.0, help="P4: seconds")
    parser.add_argument("--skip", default="", help="comma-separated: p2, p5, p4")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    parser.add_argument("--p5-server-workers", type=int, default=512,
                        help="P5: max_workers of relay's server (0: the default emulator, "
                             "python -m relay.server, whose default is 1024)")
    parser.add_argument("--child", choices=("p2", "p5", "server"), help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--subscription", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--transport", choices=P5_CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    guard_environment()
    if args.child:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        try:
            if args.child == "server":
                child_server(args)
            elif args.child == "p2":
                args.streams = int(args.streams)
                child_p2(args)
            else:
                child_p5(args)
        except Exception as exc:  # reported to the driver, which prints it
            emit(failure(exc))
        sys.stdout.flush()
        os._exit(0)  # do not wait on a client's threads at exit
    skip = {s for s in args.skip.split(",") if s}

    from relay.emulator import running_emulator

    t0, started = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    tag = f"{started:%H%M%S}"
    info: dict[str, Any] = {"started": started, "loadavg": loadavg(), "revision": revision()}
    print(f"load {info['loadavg']}", flush=True)
    if "p2" not in skip:
        bodies = [payload(i) for i in range(args.messages)]
        info["p2"] = {kind: run_p2_on(kind, args, tag, bodies)
                      for kind in P2_SERVERS if kind in args.p2_servers.split(",")}
        for kind, p2 in info["p2"].items():
            if "summary" in p2:
                p2["why"] = p2_explain(kind, info["p2"])
    p5_rounds: list[dict[str, dict[str, Any]]] = []
    if "p5" not in skip:
        workers = args.p5_server_workers
        with WideServer(workers) if workers else running_emulator() as server:
            info["p5_server"] = server.label
            print(f"P5 on {server.label} at {server.address} (pid {server.pid})", flush=True)
            admin = Admin(server.address)
            try:
                p5_rounds = run_p5(args, server, admin, tag)
            finally:
                admin.close()
    if p5_rounds:
        info["p5"] = p5_summary(p5_rounds)
        info["p5_note"] = p5_explain(info["p5"])
        if args.p5_server_workers:
            info["p5_note"] += (
                f" The run uses relay's server with `max_workers={args.p5_server_workers}`; "
                "`python -m relay.server` (what `relay.emulator` starts) defaults to 1024 "
                "(`--max-workers N` changes it): that many calls at once, each streaming pull "
                "included, and a call beyond it fails at once with RESOURCE_EXHAUSTED (its "
                "old default of 128 left the 129th stream waiting without an error). "
                "`--p5-server-workers 0` runs P5 on the default server.")
    if "p4" not in skip:
        p4 = run_p4(args)
        if "error" in p4:
            info["p4_error"] = p4["error"]
        else:
            info["p4"] = p4
    info["wall_s"] = time.monotonic() - t0
    info["verdicts"] = verdicts(info.get("p2"), info.get("p5"), info.get("p4"), args)
    info["command"] = command_line("uv run python bench/bench_targets.py", argv)
    print()
    for kind, p2 in info.get("p2", {}).items():
        print(f"P2 on {P2_SERVERS[kind]}:\n" + (p2.get("error") or p2_table(p2["summary"])
              + "\n\n" + p2["why"]) + "\n")
    if info.get("p5"):
        print(p5_table(info["p5"], args.subscriptions) + "\n\n" + info["p5_note"] + "\n")
    if info.get("p4"):
        print(p4_table(info["p4"]) + "\n")
    print(verdict_table(info["verdicts"]))
    print(f"\nwall time {info['wall_s']:.0f} s")
    if not args.no_write:
        write_section(DOC, SECTION, render(args, info), heading="")
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
