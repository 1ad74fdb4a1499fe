"""relay's Pub/Sub server beside Google's emulator: publish and consume throughput.

    uv run python bench/bench_emulator.py [--messages 50000] [--repeat 3] [--no-write]

Starts relay's server and Google's emulator (``relay.emulator``), each its own
process on loopback for the run; a warm-up round on each, then ``--repeat``
rounds, interleaved. A round: a fresh topic and two subscriptions, then three
processes of this script: ``publish`` (google-cloud-pubsub's ``PublisherClient``),
``client`` (its ``SubscriberClient``, one stream, acking in the callback) and
``raw`` (a bare gRPC ``StreamingPull`` loop: the server's rate, client cost
mostly out of the way). Prints a table (medians, ratios relay / google) and
rewrites the ``bench_emulator`` section of ``docs/emulator.md`` (what exactly is
measured is written there too). Without Google's emulator installed, relay's
server runs alone and the output says so. Figures: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    ATTRIBUTES,
    PROJECT,
    cpu_seconds,
    emit,
    failure,
    guard_environment,
    last_json,
    linux_python,
    median,
    payload,
    proc_cpu_seconds,
    versions,
    write_section,
)

DOC = ROOT / "docs" / "emulator.md"
SECTION = "bench_emulator"
#: Publisher batching: at most this many messages per Publish request.
BATCH = 1000
#: Flow control of both consumers (max outstanding messages and bytes).
FLOW_MESSAGES = 10_000
FLOW_BYTES = 512 * 1024 * 1024
ACK_DEADLINE = 60
LABELS = {"relay": "relay's server", "google": "Google's emulator"}
ROLES = ("publish", "client", "raw")
#: round -> server kind -> role -> a child's figures
Rounds = list[dict[str, dict[str, dict[str, Any]]]]


# --- the children: one role per process; the last stdout line is JSON -------

def publish(topic: str, n: int, timeout: float) -> dict[str, Any]:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(pubsub_v1.types.BatchSettings(max_messages=BATCH))
    path = publisher.topic_path(PROJECT, topic)
    data = [payload(i) for i in range(n)]
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    futures = [publisher.publish(path, d, **ATTRIBUTES) for d in data]
    for future in futures:
        future.result(timeout=timeout)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    publisher.stop()
    return {"ok": True, "received": n, "rate": n / wall, "wall_s": wall, "cpu_s": cpu}


def consume_client(sub: str, n: int, timeout: float) -> dict[str, Any]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    seen: set[str] = set()
    marks = {"calls": 0, "first": 0.0, "last": 0.0, "cpu": 0.0}
    lock, done = threading.Lock(), threading.Event()

    def callback(message: Any) -> None:
        message.ack()
        with lock:
            marks["calls"] += 1
            if message.message_id in seen:
                return
            seen.add(message.message_id)
            if len(seen) == 1:
                marks["first"] = time.perf_counter()
            if len(seen) == n:
                marks["last"], marks["cpu"] = time.perf_counter(), cpu_seconds()
                done.set()

    flow = pubsub_v1.types.FlowControl(max_messages=FLOW_MESSAGES, max_bytes=FLOW_BYTES)
    cpu0 = cpu_seconds()
    future = subscriber.subscribe(subscriber.subscription_path(PROJECT, sub), callback,
                                  flow_control=flow)
    finished = done.wait(timeout)
    future.cancel()
    with contextlib.suppress(Exception):
        future.result(timeout=10)
    subscriber.close()
    got = len(seen)
    if not finished:
        return {"ok": False, "received": got, "error": f"{got:,} of {n:,} in {timeout:g} s"}
    wall = marks["last"] - marks["first"]
    return {"ok": True, "received": got, "rate": (n - 1) / wall, "wall_s": wall,
            "cpu_s": marks["cpu"] - cpu0, "duplicates": marks["calls"] - got}


def consume_raw(address: str, sub: str, n: int, timeout: float) -> dict[str, Any]:
    import grpc
    from google.pubsub_v1.types import StreamingPullRequest, StreamingPullResponse

    request, response = StreamingPullRequest.pb(), StreamingPullResponse.pb()
    channel = grpc.insecure_channel(address)
    pull = channel.stream_stream("/google.pubsub.v1.Subscriber/StreamingPull",
                                 request_serializer=request.SerializeToString,
                                 response_deserializer=response.FromString)
    outbox: queue.Queue[Any] = queue.Queue()
    outbox.put(request(subscription=f"projects/{PROJECT}/subscriptions/{sub}",
                       stream_ack_deadline_seconds=ACK_DEADLINE,
                       max_outstanding_messages=FLOW_MESSAGES,
                       max_outstanding_bytes=FLOW_BYTES))

    def requests() -> Any:
        while (item := outbox.get()) is not None:
            yield item

    seen: set[str] = set()
    first = last = 0.0
    first_batch, responses, error = 0, 0, ""
    cpu0 = cpu_seconds()
    call = pull(requests(), timeout=timeout)
    try:
        for reply in call:
            responses += 1
            outbox.put(request(ack_ids=[m.ack_id for m in reply.received_messages]))
            seen.update(m.message.message_id for m in reply.received_messages)
            if not first:
                first, first_batch = time.perf_counter(), len(seen)
            if len(seen) >= n:
                last = time.perf_counter()
                break
    except grpc.RpcError as exc:
        error = f"{exc.code()}: {exc.details()}"
    cpu = cpu_seconds() - cpu0
    outbox.put(None)
    call.cancel()
    channel.close()
    if not last:
        return {"ok": False, "received": len(seen), "error": error or f"{len(seen):,} of {n:,}"}
    wall = last - first
    after_first = len(seen) - first_batch  # none if the first response held them all
    return {"ok": True, "received": len(seen),
            "rate": after_first / wall if after_first else float("nan"),
            "wall_s": wall, "cpu_s": cpu, "first_batch": first_batch,
            "per_response": len(seen) / responses}


def child(argv: list[str]) -> int:
    """``ROLE NAME MESSAGES TIMEOUT`` (NAME: the topic or the subscription)."""
    role, name, n, timeout = argv[0], argv[1], int(argv[2]), float(argv[3])
    guard_environment()
    try:
        out = (publish(name, n, timeout) if role == "publish" else
               consume_client(name, n, timeout) if role == "client" else
               consume_raw(os.environ["PUBSUB_EMULATOR_HOST"], name, n, timeout))
    except Exception as exc:  # reported to the driver, which prints it
        out = failure(exc)
    emit(out)
    return 0


# --- the driver ---------------------------------------------------------------

def run_child(role: str, name: str, server: Any, n: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=server.address)
    cmd = [sys.executable, str(Path(__file__).resolve()), role, name, str(n), str(timeout)]
    server0 = proc_cpu_seconds(server.pid)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=timeout + 60, check=False)
        result: dict[str, Any] = last_json(proc.stdout) or {
            "ok": False, "error": f"exit {proc.returncode}: {proc.stderr[-600:]}"}
    except subprocess.TimeoutExpired:
        result = {"ok": False, "error": f"{role} process timed out"}
    result["server_cpu_s"] = proc_cpu_seconds(server.pid) - server0
    return result


def one_round(server: Any, tag: str, n: int, timeout: float) -> dict[str, dict[str, Any]]:
    """Publish, then drain with the client and the raw loop, on fresh names."""
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = server.address
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, f"emu-{tag}")
    subs = {role: subscriber.subscription_path(PROJECT, f"emu-{tag}-{role}")
            for role in ("client", "raw")}
    publisher.create_topic(request={"name": topic})
    for path in subs.values():
        subscriber.create_subscription(request={"name": path, "topic": topic,
                                                "ack_deadline_seconds": ACK_DEADLINE})
    out = {"publish": run_child("publish", topic.rsplit("/", 1)[1], server, n, timeout)}
    for role, path in subs.items():
        out[role] = run_child(role, path.rsplit("/", 1)[1], server, n, timeout)
    with contextlib.suppress(Exception):  # tidy only; the names are never used again
        for path in subs.values():
            subscriber.delete_subscription(request={"subscription": path})
        publisher.delete_topic(request={"topic": topic})
    subscriber.close()
    publisher.stop()
    return out


#: (row label, phase, figure) of the table.
ROWS = [
    ("publish, messages/s", "publish", "rate"),
    ("publish, server CPU µs / message", "publish", "server_us"),
    ("consume (client, 1 stream), messages/s", "client", "rate"),
    ("consume (client), consumer CPU µs / message", "client", "cpu_us"),
    ("consume (client), server CPU µs / message", "client", "server_us"),
    ("consume (raw gRPC, 1 stream), messages/s", "raw", "rate"),
    ("consume (raw gRPC), consumer CPU µs / message", "raw", "cpu_us"),
    ("consume (raw gRPC), server CPU µs / message", "raw", "server_us"),
    ("consume (raw gRPC), messages per response (mean)", "raw", "per_response"),
]


def figure(result: dict[str, Any], key: str, n: int) -> float | None:
    if not result.get("ok"):
        return None
    if key in ("rate", "per_response"):
        return float(result[key])
    seconds = result["cpu_s"] if key == "cpu_us" else result["server_cpu_s"]
    return 1e6 * float(seconds) / n


def render_table(rounds: Rounds, kinds: list[str], n: int) -> str:
    head = "| | " + " | ".join(LABELS[k] for k in kinds)
    lines = [head + (" | relay / google |" if len(kinds) == 2 else " |"),
             "|---" * (len(kinds) + 1 + (len(kinds) == 2)) + "|"]
    for label, phase, key in ROWS:
        cells = []
        per_kind: dict[str, list[float | None]] = {}
        for kind in kinds:
            values = [figure(r[kind][phase], key, n) for r in rounds]
            per_kind[kind] = values
            ok = [v for v in values if v is not None]
            fmt = "{:,.1f}" if key.endswith("_us") else "{:,.0f}"
            each = ", ".join("failed" if v is None else fmt.format(v) for v in values)
            cells.append(f"**{fmt.format(median(ok))}** ({each})" if ok else f"— ({each})")
        if len(kinds) == 2:
            ratios = [a / b for a, b in zip(per_kind["relay"], per_kind["google"], strict=True)
                      if a is not None and b is not None and b > 0]
            cells.append(f"**{median(ratios):.2f}**" if ratios else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_section(table: str, args: argparse.Namespace, info: dict[str, Any]) -> str:
    found = versions("google-cloud-pubsub", "grpcio", "protobuf")
    alone = f"\n**{info['alone']}**\n" if info["alone"] else ""
    return f"""## Speed

Measured side by side by one command (it rewrites only this section):

```
{info['command']}
```

* Run: {info['started']:%Y-%m-%d %H:%M} UTC, {info['wall_s'] / 60:.1f} minutes
* Machine: {os.cpu_count()} cores, shared with other work and noisy; {linux_python()}
* Versions: {found}; Google's emulator {info['emulator']}
* Each server is its own process on loopback for the whole run, warmed up with
  {args.warmup:,} messages (not reported), then {args.repeat} rounds, interleaved.
  A round: a fresh topic with two subscriptions (ack deadline {ACK_DEADLINE} s),
  {args.messages:,} messages of ~{info['size']} bytes with 2 attributes published,
  then each subscription drained on one stream. Every client is its own process.
* publish: `PublisherClient(batch_settings=BatchSettings(max_messages={BATCH}))`,
  max_bytes 1 MB and max_latency 10 ms (google's defaults); from the first
  `publish()` to the last future resolved.
* consume (client): the unmodified `SubscriberClient.subscribe()` with
  `FlowControl(max_messages={FLOW_MESSAGES:,}, max_bytes={FLOW_BYTES // 2**20} MiB)`
  and google's default scheduler (10 threads); the callback acks and counts.
  Rate from the first message received to the {args.messages:,}th; consumer CPU
  from `subscribe()` to the {args.messages:,}th message.
* consume (raw gRPC): one `StreamingPull` call with the generated protobuf
  classes (`max_outstanding_messages={FLOW_MESSAGES:,}`), every response's ack ids
  sent back on the stream; rate from the first response to the {args.messages:,}th
  message, the first response's messages left out.
* Server CPU: the server process's own CPU time (`/proc`) over each client's
  whole run (start-up and the acks after the last message included), per message.
{alone}
Bold: median over the rounds (each round in brackets); relay / google: median of
the per-round ratios.

{table}

{info['verdict']}
"""


def verdict(rounds: Rounds, kinds: list[str], n: int) -> str:
    def med(kind: str, phase: str) -> float:
        return median(v for r in rounds if (v := figure(r[kind][phase], "rate", n)))

    relay = (med("relay", "client"), med("relay", "raw"))
    if len(kinds) == 1:
        return (f"relay's server fed one google-cloud-pubsub stream at {relay[0]:,.0f} "
                f"messages/s and a raw gRPC stream at {relay[1]:,.0f} (Google's emulator "
                "was not measured).")
    google = (med("google", "client"), med("google", "raw"))
    bound = (f"the client's own limit: the raw loop gets {relay[1] / relay[0]:.0f}x that"
             if relay[1] > 1.2 * relay[0] else "about what the raw loop gets too")
    paced = ("and the raw loop gets no more from it, so that is the emulator's own pace"
             if google[1] < 1.2 * google[0] else f"and the raw loop gets {google[1]:,.0f}")
    return (f"On one stream, relay's server fed google-cloud-pubsub's client {relay[0]:,.0f} "
            f"messages/s ({bound}; issue 12 asks for at least 10,000), Google's emulator "
            f"{google[0]:,.0f} ({paced}): {relay[0] / google[0]:.1f}x for the client.")


def describe(prefix: str, phases: dict[str, dict[str, Any]], n: int) -> bool:
    """Print one line per child's figures; False if any failed."""
    for phase, r in phases.items():
        print(f"{prefix} {phase:<7} " + (
            f"{r['rate']:9,.0f} messages/s  client CPU {1e6 * r['cpu_s'] / n:5.1f} µs/msg  "
            f"server CPU {1e6 * r['server_cpu_s'] / n:5.1f} µs/msg"
            + (f"  duplicates {r['duplicates']}" if r.get("duplicates") else "")
            + (f"  first response {r['first_batch']}, mean {r['per_response']:,.0f} per "
               "response" if "first_batch" in r else "")
            if r.get("ok") else f"FAILED: {r.get('error')}"), flush=True)
    return all(r.get("ok") for r in phases.values())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in ROLES:
        return child(argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5_000,
                        help="messages of the unreported first round on each server")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per client run")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    args = parser.parse_args(argv)

    guard_environment()
    from relay.emulator import Emulator, EmulatorError, find_launcher

    kinds, alone, version = ["relay", "google"], "", "not installed"
    try:
        jars = sorted((find_launcher().parent.parent / "lib").glob("cloud-pubsub-emulator-*"))
        version = jars[-1].name.split("-")[3] if jars else "unknown"
    except EmulatorError as exc:
        kinds = ["relay"]
        alone = f"Google's emulator is not installed, so relay's server ran alone ({exc})"
        print(alone, flush=True)
    t0, started = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    servers: dict[str, Any] = {}
    rounds: Rounds = []
    failed = False
    try:
        for kind in kinds:
            servers[kind] = Emulator(kind=kind).start()
            print(f"{LABELS[kind]} on {servers[kind].address} (pid {servers[kind].pid})",
                  flush=True)
        for kind in kinds:
            if args.warmup:
                warm = one_round(servers[kind], f"warm-{kind}", args.warmup, args.timeout)
                describe(f"warm-up {kind}", warm, args.warmup)
        for rnd in range(args.repeat):
            results: dict[str, dict[str, dict[str, Any]]] = {}
            for kind in kinds if rnd % 2 == 0 else kinds[::-1]:
                results[kind] = one_round(servers[kind], f"{kind}-{rnd}", args.messages,
                                          args.timeout)
                failed |= not describe(f"round {rnd} {kind:<6}", results[kind], args.messages)
            rounds.append(results)
    finally:
        for server in servers.values():
            server.stop()
    wall = time.monotonic() - t0

    table = render_table(rounds, kinds, args.messages)
    print()
    print(table)
    print(f"\n{args.messages:,} messages, {args.repeat} round(s); wall time {wall:.0f} s")
    if alone:
        print(alone)
    info = {"command": ("uv run python bench/bench_emulator.py " + " ".join(argv)).strip(),
            "started": started, "wall_s": wall, "alone": alone, "emulator": version,
            "size": len(payload(0)), "verdict": verdict(rounds, kinds, args.messages)}
    print(info["verdict"])
    if not args.no_write:
        write_section(DOC, SECTION, render_section(table, args, info), heading="")
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
