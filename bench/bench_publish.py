"""Publish benchmark: relay (both transports), bare google-cloud-pubsub, Relé and a
raw gRPC floor, side by side on relay's Pub/Sub server.

    uv run --group bench python bench/bench_publish.py [--messages 50000] [--repeat 3] [--no-write]

Starts relay's server once (``relay.emulator.running_emulator()``, loopback) for
the run; each round runs every contender (rotated order) in a fresh process of
this script (``--contender NAME``) on a fresh topic. A child imports its
library, builds its N messages (``_common.payload(i)``, 2 attributes), publishes
``--warmup`` of them (clients built, channel open), then times from the first
publish to the last confirmation: wall, CPU (``getrusage`` self, all threads)
and the process's peak RSS. Prints a table (medians, each round, ratios to
``bare``) and rewrites the ``bench_publish`` section of ``docs/performance.md``.
Figures only: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
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
    last_json,
    linux_python,
    median,
    payload,
    proc_cpu_seconds,
    revision,
    run_line,
    status_mb,
    versions,
    write_section,
)

DOC = ROOT / "docs" / "performance.md"
SECTION, HEADING = "bench_publish", "## Publishing: 50,000 messages"
CONTENDERS = ("relay", "relay-grpc", "relay-floor", "bare", "rele", "raw")
#: Messages per Publish request of the raw floor.
RAW_BATCH = 1000
#: Publish calls of 100 messages the raw contender times after its run (``call_us``).
CALLS = 200
#: What the garbage collector sees of the inputs the harness builds before the clock.
GC_MODES = {
    "frozen": "after building its inputs, each child calls `gc.collect()` and `gc.freeze()`, "
              "so the collector no longer walks them (nor what was imported): relay and Relé "
              "are handed 50,000 dicts, which the collector tracks, while bare and raw are "
              "handed bytes, which it does not, and with `live` every full collection in a "
              "relay or Relé run walked the harness's dicts, a cost of the harness, not of "
              "the library (3-6 µs per message for relay in this session's trial runs)",
    "live": "the inputs stay where the collector walks them (how this benchmark ran before "
            "2026-12-05): relay and Relé pay for walking 50,000 dicts the harness holds, "
            "bare and raw hold bytes, which the collector does not track",
}
#: round -> contender -> the child's figures
Rounds = list[dict[str, dict[str, Any]]]
#: What each contender ran with (the doc lists it).
SETTINGS = {
    "relay": "`relay.publish(topic, data, **attrs)` (data: the dict) through the process-wide "
             "`Publisher`, configured by `RELAY_*` variables only (`RELAY_GC_PROJECT_ID`, "
             '`RELAY_TRANSPORT=pubsub`: google\'s `PublisherClient`, batches of '
             "100 messages / 1 MB / 10 ms); defaults otherwise: `LoggingMiddleware` (logging "
             "at WARNING), `PUBLISHER_MAX_MESSAGES=1000`; every returned future waited on",
    "relay-grpc": "the same with `RELAY_TRANSPORT=grpc` (`relay/transports/grpc/`, the same "
                  "batching defaults)",
    "bare": "google-cloud-pubsub `PublisherClient()`, default batching (100 messages / 1 MB / "
            "10 ms), `publish(path, bytes, **attrs)`, every future waited on",
    "rele": "`rele.config.setup({\"GC_PROJECT_ID\": ...})` (default middleware; no credentials: "
            "`PUBSUB_EMULATOR_HOST` is set and `google.auth.default()` fails at once on "
            "loopback), then the global `Publisher.publish(topic, data, **attrs)` that "
            "`rele.publish` calls (`rele.publish` itself returns None, no future to wait on); "
            "stdlib `json.dumps`, google's default batching",
    "relay-floor": "relay's own share: `relay.Publisher` with the process-wide app's settings "
                   "and middleware over an in-process stand-in for the grpc transport that "
                   "does its per-message work (`encode_message`, a `PublishFuture` per "
                   "message) and resolves each batch of 100 with `resolve` on the publishing "
                   "thread: no network, no loop thread, nothing sent (the broker columns do "
                   "not apply)",
    "raw": f"sync `Publish` RPCs of {RAW_BATCH:,} messages built with `google.pubsub_v1`'s "
           "protobuf classes (`PublishRequest.pb()`, `PubsubMessage.pb()`) on one "
           "`grpc.insecure_channel`, one request at a time",
}


# --- the child: one contender per process; the last stdout line is JSON ------

def wait_all(futures: list[Any], timeout: float) -> int:
    """Wait for every future in turn; the number that failed."""
    failed = 0
    for future in futures:
        try:
            future.result(timeout=timeout)
        except Exception:
            failed += 1
    return failed


Sender = Callable[[list[Any]], int]  # publish these items, wait for all; the failures


def sender(publish: Callable[..., Any], target: str, timeout: float) -> Sender:
    def send(items: list[Any]) -> int:
        return wait_all([publish(target, d, **ATTRIBUTES) for d in items], timeout)

    return send


def setup_relay(topic: str, timeout: float) -> tuple[Sender, Callable[[], None]]:
    import relay

    return sender(relay.publish, topic, timeout), relay.reset


def setup_bare(topic: str, timeout: float) -> tuple[Sender, Callable[[], None]]:
    from google.cloud import pubsub_v1

    client = pubsub_v1.PublisherClient()
    return sender(client.publish, client.topic_path(PROJECT, topic), timeout), client.stop


def setup_rele(topic: str, timeout: float) -> tuple[Sender, Callable[[], None]]:
    import rele.config
    import rele.publishing

    rele.config.setup({"GC_PROJECT_ID": PROJECT})
    publisher = rele.publishing._publisher
    assert publisher is not None
    return sender(publisher.publish, topic, timeout), publisher._client.stop


def setup_raw(topic: str, timeout: float) -> tuple[Sender, Callable[[], None]]:
    import grpc
    from google.pubsub_v1 import types

    request, message = types.PublishRequest.pb(), types.PubsubMessage.pb()
    channel = grpc.insecure_channel(os.environ["PUBSUB_EMULATOR_HOST"])
    call = channel.unary_unary("/google.pubsub.v1.Publisher/Publish",
                               request_serializer=request.SerializeToString,
                               response_deserializer=types.PublishResponse.pb().FromString)
    path = f"projects/{PROJECT}/topics/{topic}"

    def send(items: list[Any]) -> int:
        confirmed = 0
        for at in range(0, len(items), RAW_BATCH):
            chunk = items[at:at + RAW_BATCH]
            req = request(topic=path,
                          messages=[message(data=d, attributes=ATTRIBUTES) for d in chunk])
            confirmed += len(call(req, timeout=timeout).message_ids)
        return len(items) - confirmed

    def per_call() -> dict[str, float]:
        """The client's CPU for one Publish call of 100 pre-built messages (after the
        timed run, not in it): what each batch costs at relay's default batch size."""
        req = request(topic=path, messages=[message(data=payload(i), attributes=ATTRIBUTES)
                                            for i in range(100)])
        call(req, timeout=timeout)
        cpu0 = cpu_seconds()
        for _ in range(CALLS):
            call(req, timeout=timeout)
        return {"call_us": 1e6 * (cpu_seconds() - cpu0) / CALLS}

    send.extra = per_call  # type: ignore[attr-defined]
    return send, channel.close


def setup_floor(topic: str, timeout: float) -> tuple[Sender, Callable[[], None]]:
    import relay
    from relay.publisher import Publisher
    from relay.transports.futures import BatchCondition, PublishFuture, resolve
    from relay.transports.grpc.publisher import encode_message

    class InProcess:
        """The grpc transport's per-message work, resolved in batches of 100 at once."""

        def __init__(self) -> None:
            self.condition, self.messages, self.futures = BatchCondition(), [], []

        def publish(self, topic: str, data: bytes, attributes: Any, *,
                    ordering_key: str = "") -> Any:
            self.messages.append(encode_message(data, attributes, ordering_key))
            future = PublishFuture(self.condition)
            self.futures.append(future)
            if len(self.futures) == 100:
                self.flush()
            return future

        def flush(self) -> None:
            resolve(self.condition, self.futures, [str(i) for i in range(len(self.futures))])
            self.condition, self.messages, self.futures = BatchCondition(), [], []

    app, transport = relay.get_app(), InProcess()
    publisher = Publisher(transport, settings=app.settings,  # type: ignore[arg-type]
                          middleware=app.middleware)

    def send(items: list[Any]) -> int:
        futures = [publisher.publish(topic, d, **ATTRIBUTES) for d in items]
        transport.flush()
        return wait_all(futures, timeout)

    return send, relay.reset


#: contender -> (modules whose import is "after import", setup, data kind)
SETUPS: dict[str, tuple[tuple[str, ...], Callable[..., Any], str]] = {
    "relay": (("relay",), setup_relay, "dict"),
    "relay-grpc": (("relay",), setup_relay, "dict"),
    "relay-floor": (("relay",), setup_floor, "dict"),
    "bare": (("google.cloud.pubsub_v1",), setup_bare, "bytes"),
    "rele": (("rele", "rele.config", "rele.publishing"), setup_rele, "dict"),
    "raw": (("grpc", "google.pubsub_v1"), setup_raw, "bytes"),
}


def child(name: str, topic: str, n: int, warmup: int, timeout: float,
          gc_mode: str = "frozen") -> dict[str, Any]:
    import gc
    import importlib

    import orjson

    modules, setup, kind = SETUPS[name]
    for module in modules:
        importlib.import_module(module)
    out: dict[str, Any] = {"ok": False, "import_mb": status_mb("VmRSS")}
    # orjson's output bytes keep a ~4 KB allocation each: copy them down to size.
    items: list[Any] = [bytes(memoryview(payload(i))) for i in range(n)]
    if kind == "dict":
        items = [orjson.loads(b) for b in items]
    if gc_mode == "frozen":  # see GC_MODES
        gc.collect()
        gc.freeze()
    send, close = setup(topic, timeout)
    if warmup and send(items[:warmup]):
        return {**out, "error": "the warm-up publishes failed"}
    out["ready_mb"] = status_mb("VmRSS")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    failed = send(items)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    out.update(peak_mb=status_mb("VmHWM"), end_mb=status_mb("VmRSS"), wall_s=wall, cpu_s=cpu,
               failed=failed, rate=n / wall, cpu_us=1e6 * cpu / n, ok=failed == 0)
    if failed:
        out["error"] = f"{failed:,} of {n:,} publishes failed"
    elif hasattr(send, "extra"):
        out.update(send.extra())
    with contextlib.suppress(Exception):
        close()
    return out


# --- the driver -----------------------------------------------------------------

def run_contender(name: str, server: Any, admin: Any, tag: str,
                  args: argparse.Namespace) -> dict[str, Any]:
    topic = f"pub-{tag}-{name}"
    path = admin.topic_path(PROJECT, topic)
    admin.create_topic(request={"name": path})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(PUBSUB_EMULATOR_HOST=server.address, RELAY_GC_PROJECT_ID=PROJECT)
    if name in ("relay", "relay-grpc"):  # named either way: grpc is the default now
        env["RELAY_TRANSPORT"] = "grpc" if name == "relay-grpc" else "pubsub"
    if name.startswith("relay"):
        env.update((f"RELAY_{key}", value) for key, value in args.relay_setting)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--contender", name, "--topic", topic,
           "--messages", str(args.messages), "--warmup", str(args.warmup),
           "--timeout", str(args.timeout), "--gc", args.gc]
    server0 = proc_cpu_seconds(server.pid)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=guard_environment(env),
                              cwd=ROOT, timeout=args.timeout + 120, check=False)
        result: dict[str, Any] = last_json(proc.stdout) or {
            "ok": False, "error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    except subprocess.TimeoutExpired:
        result = {"ok": False, "error": "the process timed out"}
    result["server_us"] = 1e6 * (proc_cpu_seconds(server.pid) - server0) / (
        args.messages + args.warmup)
    with contextlib.suppress(Exception):
        admin.delete_topic(request={"topic": path})
    return result


def describe(rnd: int, name: str, r: dict[str, Any]) -> None:
    print(f"round {rnd} {name:<10} " + (
        f"{r['rate']:9,.0f} msgs/s  CPU {r['cpu_us']:6.1f} µs/msg  RSS import "
        f"{r['import_mb']:5.0f} MB, ready {r['ready_mb']:5.0f}, peak {r['peak_mb']:5.0f}  "
        f"server CPU {r['server_us']:5.1f} µs/msg" if r.get("ok") else
        f"FAILED: {r.get('error')}"), flush=True)


#: (column, key, format, with rounds and ratio to bare)
COLUMNS = [("msgs/s (wall)", "rate", "{:,.0f}", True),
           ("CPU µs / msg", "cpu_us", "{:,.1f}", True),
           ("RSS after import, MB", "import_mb", "{:,.0f}", False),
           ("RSS with data, ready, MB", "ready_mb", "{:,.0f}", False),
           ("peak RSS, MB", "peak_mb", "{:,.0f}", True),
           ("server CPU µs / msg", "server_us", "{:,.1f}", False)]
LABELS = {"relay": "relay (pubsub transport)", "relay-grpc": "relay (grpc transport)",
          "relay-floor": "relay's own share (no I/O)",
          "bare": "bare google-cloud-pubsub", "rele": "Relé", "raw": "raw gRPC floor"}


def values(rounds: Rounds, name: str, key: str) -> list[float | None]:
    return [r[name][key] if r[name].get("ok") else None for r in rounds]


def ratio_to(rounds: Rounds, name: str, other: str, key: str) -> float:
    if other not in rounds[0]:
        return float("nan")
    pairs = zip(values(rounds, name, key), values(rounds, other, key), strict=True)
    return median(a / b for a, b in pairs if a is not None and b)


def render_table(rounds: Rounds, names: list[str]) -> str:
    head = ["contender"]
    for title, _, _, rel in COLUMNS:
        head += [title, "/ bare"] if rel else [title]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in names:
        cells = [LABELS[name]]
        for _, key, fmt, rel in COLUMNS:
            vals = values(rounds, name, key)
            ok = [v for v in vals if v is not None]
            if not ok:
                cells += ["—", "—"] if rel else ["—"]
                continue
            each = ", ".join("failed" if v is None else fmt.format(v) for v in vals)
            cells.append(f"**{fmt.format(median(ok))}** ({each})" if rel else
                         fmt.format(median(ok)))
            if rel:
                cells.append(f"{ratio_to(rounds, name, 'bare', key):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failures(rounds: Rounds, names: list[str]) -> list[str]:
    """'NAME: could not run because ...' for a contender that failed every round."""
    return [f"{name}: could not run because {rounds[0][name].get('error')}"
            for name in names if rounds and not any(r[name].get("ok") for r in rounds)]


def verdict(rounds: Rounds) -> str:
    """Target P3 of issue 13, line by line, from the medians."""
    names = [n for n in CONTENDERS if n in rounds[0]]
    med = {(n, k): median(v for v in values(rounds, n, k) if v is not None)
           for n in names for k in ("cpu_us", "rate", "peak_mb", "call_us")
           if any(r[n].get(k) is not None for r in rounds)}
    if any(med.get((n, "cpu_us"), float("nan")) != med.get((n, "cpu_us"))
           for n in ("relay", "relay-grpc", "bare")):
        return "relay, relay-grpc or bare did not run, so there is no comparison to draw."

    def met(ok: bool) -> str:
        return "**MET**" if ok else "**NOT MET**"

    cpu, rate = med["relay-grpc", "cpu_us"], med["relay-grpc", "rate"]
    peak, bare_peak = med["relay-grpc", "peak_mb"], med["bare", "peak_mb"]
    google = ratio_to(rounds, "relay", "bare", "cpu_us")
    return "\n".join([
        "P3 (issue 13), from the medians above:",
        "",
        f"* `relay.publish` on the grpc transport: {rate:,.0f} msgs/s (target >= 50,000): "
        f"{met(rate >= 50_000)}; {cpu:.1f} µs of CPU per message (target <= 12): "
        f"{met(cpu <= 12)}.",
        f"* Peak RSS while publishing: {peak:.0f} MB against the "
        f"bare client's {bare_peak:.0f} MB (target: below it): {met(peak < bare_peak)}.",
        f"* On the google-backed transport (`TRANSPORT=\"pubsub\"`): {google:.2f}x the bare "
        f"client's CPU per message (median of per-round ratios; target <= 1.15x): "
        f"{met(google <= 1.15)}.",
        *why(med, cpu, google),
    ])


def why(med: dict[tuple[str, str], float], cpu: float, google: float) -> list[str]:
    """Where the CPU goes, from the floor contenders, when they ran."""
    floor = med.get(("relay-floor", "cpu_us"))
    if floor is None or floor != floor:
        return []
    bare = med["bare", "cpu_us"]
    lines = [
        "",
        f"Where it goes: relay's own share of a publish (relay-floor: validation, JSON, "
        f"hooks, budget, the protobuf bytes, a future, its resolution; no I/O) is "
        f"{floor:.1f} µs; the grpc transport adds {cpu - floor:.1f} µs on top for sending "
        f"(its event-loop thread, gRPC's poller thread, the GIL handed between them and the "
        f"publishing thread). 12 µs in all would leave {12 - floor:.1f} µs for that.",
        f"On google's client, relay's share comes on top of google's own "
        f"{bare:.1f} µs (bare): 1.15x would leave relay {0.15 * bare:.1f} µs, against its "
        f"{floor:.1f} µs floor without I/O (which includes building the protobuf bytes, "
        "~1 µs, that google's client builds itself on that transport).",
    ]
    raw = med.get(("raw", "cpu_us"))
    if raw is not None and raw == raw:
        lines.append(f"The raw gRPC floor ({raw:.1f} µs) sends pre-built bytes in batches "
                     "of 1,000 with no future, hook, validation or budget per message.")
    call = med.get(("raw", "call_us"))
    if call is not None and call == call:
        lines.append(f"One Publish call of 100 messages costs the client {call:.0f} µs of CPU "
                     f"(raw contender, {CALLS} sync calls after its run): {call / 100:.1f} µs "
                     "per message at the default batch of 100 "
                     "(`PUBLISHER_BATCH_MAX_MESSAGES`), before any of relay's own work.")
    return lines


def render_section(table: str, args: argparse.Namespace, info: dict[str, Any]) -> str:
    found = versions("relay-pubsub", "google-cloud-pubsub", "grpcio", "protobuf", "orjson",
                     "rele")
    settings = "\n".join(f"* **{n}**: {SETTINGS[n]}." for n in info["names"])
    failed = "".join(f"\n**{line}**\n" for line in info["failures"])
    extra = "".join(f"\n* The relay contenders also ran with `{k}={v}` (`--relay-setting`)."
                    for k, v in args.relay_setting)
    return f"""{HEADING}

Written by one command (it rewrites only this section):

```
{info['command']}
```

{run_line(info['started'], info['wall_s'], info['revision'])}
* Machine: {os.cpu_count()} cores, shared with other work and noisy; {linux_python()}
* Versions: {found}
* Broker: {info['server']} on loopback, one process for the whole run.
* Each round (rounds interleaved, order rotated), every contender runs in a fresh
  process on a fresh topic with no subscription: it imports its library, builds
  {args.messages:,} messages (`bench/_common.payload(i)`, {info['size']} bytes of
  JSON, attributes {', '.join(f'`{k}`' for k in ATTRIBUTES)}; relay and Relé get the
  decoded dict and encode it themselves), publishes {args.warmup} of them as a
  warm-up (clients built, channel open, not counted), then publishes all
  {args.messages:,} and waits for every confirmation. Wall: first publish to last
  confirmation; CPU: `getrusage(RUSAGE_SELF)` user + system, all threads, over the
  same span; peak RSS: `VmHWM` after it, so it counts what the {args.messages:,}
  futures the caller holds until the end keep alive. "RSS after import" is taken
  right after importing the library; "ready" after building the messages (the
  dicts take ~65 MB more than the bytes) and the warm-up.
  Server CPU: the broker's own CPU over the child's whole life, per message.
* Garbage collector (`--gc {args.gc}`): {GC_MODES[args.gc]}.{extra}

{settings}

Bold: median over the rounds (each round in brackets); / bare: median of the
per-round ratios to bare google-cloud-pubsub.

{table}
{failed}
{info['verdict']}
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100, help="uncounted publishes first")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per child run")
    parser.add_argument("--gc", choices=tuple(GC_MODES), default="frozen",
                        help="what the collector sees of the inputs built before the clock")
    parser.add_argument("--relay-setting", action="append", default=[], metavar="NAME=VALUE",
                        type=lambda text: tuple(text.split("=", 1)),
                        help="a relay setting for the relay contenders (repeatable), e.g. "
                             "PUBLISHER_BATCH_MAX_MESSAGES=1000")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    guard_environment()
    if args.contender:
        try:
            out = child(args.contender, args.topic, args.messages, args.warmup, args.timeout,
                        args.gc)
        except Exception as exc:  # reported to the driver, which prints it
            out = failure(exc)
        emit(out)
        return 0
    names = [n for n in args.contenders.split(",") if n]
    if unknown := set(names) - set(CONTENDERS):
        parser.error(f"unknown contender(s) {sorted(unknown)}; known: {CONTENDERS}")

    from google.cloud import pubsub_v1

    from relay.emulator import running_emulator

    t0, started = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    rounds: Rounds = []
    with running_emulator() as server:
        label = server.label
        print(f"{label} on {server.address} (pid {server.pid})", flush=True)
        admin = pubsub_v1.PublisherClient()
        for rnd in range(args.repeat):
            shift = rnd % len(names)
            results: dict[str, dict[str, Any]] = {}
            for name in names[shift:] + names[:shift]:
                results[name] = run_contender(name, server, admin, f"{started:%H%M%S}-{rnd}",
                                              args)
                describe(rnd, name, results[name])
            rounds.append(results)
        admin.stop()
    wall = time.monotonic() - t0

    table = render_table(rounds, names)
    print(f"\n{table}\n")
    print(f"{args.messages:,} messages, {args.repeat} round(s); wall time {wall:.0f} s")
    lost = failures(rounds, names)
    for line in lost:
        print(line)
    info = {"command": command_line("uv run --group bench python bench/bench_publish.py", argv),
            "started": started, "wall_s": wall, "names": names, "failures": lost,
            "server": label, "size": len(payload(0)), "revision": revision(),
            "verdict": verdict(rounds) if rounds else ""}
    print(info["verdict"])
    if not args.no_write:
        write_section(DOC, SECTION, render_section(table, args, info), heading="")
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0 if all(r.get("ok") for rnd in rounds for r in rnd.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
