"""Push benchmark: relay's push apps under uvicorn and gunicorn beside relay's pull worker.

    uv run --group bench python bench/bench_push.py [--messages 20000] [--rounds 3] [--no-write]

Each round (rounds interleaved, order rotated) runs every variant once, each in
fresh processes, on the same messages (``_common.payload(i)``: the consume
benchmark's ~300-byte JSON, 2 attributes):

* ``push-sync`` / ``push-async``: ``relay.push.asgi_app(PushHandler([handler],
  verifier=Unverified()))`` served by uvicorn (``--http``, ``--loop``) in its own
  process on 127.0.0.1. Token verification is off: there is no Google token on
  loopback. ``handler`` is a sync ``@sub`` function, or an ``async def`` one,
  that only counts the decoded message.
* ``wsgi-sync``: ``relay.push.wsgi_app`` of the same sync handler under gunicorn
  (one gthread worker of ``--concurrency`` threads).
* ``asgi-floor`` / ``wsgi-floor``: the least any push endpoint does, as a bare
  ASGI (uvicorn) or WSGI (gunicorn) app: read the body, parse the envelope,
  decode ``message.data`` (base64, then ``orjson``), answer 200. No relay.
* ``pull``: ``bench_consume.py``'s ``relay`` variant (``bench/consumer.py``:
  ``relay.Worker``, a sync ``@sub`` handler that counts) draining the messages
  from a fresh subscription of relay's Pub/Sub server (``relay.emulator``, one
  process for the whole run, the messages published once up front); its CPU per
  message is the consumer process's, as in the consume table.

For the served variants a load generator in another process (asyncio,
``--connections`` keep-alive HTTP/1.1 connections, one request in flight on
each) POSTs Pub/Sub's wrapped envelope (base64 in ``message.data``):
``--warmup`` requests (not counted), then ``--messages``, over which it measures
requests/s (wall), the SERVER's CPU (``/proc/<pid>/stat``, all threads, with
gunicorn's worker) per request, and latency p50/p99.

Prints a table (medians, each round) and ratios taken within each round, and
rewrites the ``bench_push`` section of ``docs/performance.md``. Figures only:
nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    ATTRIBUTES,
    PROJECT,
    TOPIC,
    command_line,
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
    versions,
    write_section,
)

DOC = ROOT / "docs" / "performance.md"
SECTION, HEADING = "bench_push", "## Push: requests through the ASGI app"
VARIANTS = ("push-sync", "push-async", "asgi-floor", "wsgi-sync", "wsgi-floor", "pull",
            "pull-grpc")
#: pull variant -> bench_consume.py's contender
PULLS = {"pull": "relay", "pull-grpc": "relay-grpc"}
PUSH_NAME = f"push-{TOPIC}"  # what relay names @sub(TOPIC, prefix="push")
PUBLISH_TIME = "2026-12-05T10:00:00.123456Z"
LABELS = {
    "push-sync": "push, ASGI, sync handler",
    "push-async": "push, ASGI, `async def` handler",
    "wsgi-sync": "push, WSGI (gunicorn), sync handler",
    "asgi-floor": "floor: bare ASGI app, no relay",
    "wsgi-floor": "floor: bare WSGI app (gunicorn), no relay",
    "pull": "pull, `relay.Worker`, pubsub transport",
    "pull-grpc": "pull, `relay.Worker`, grpc transport",
}


# --- the server: uvicorn or gunicorn serving one app, in its own process --------

def serve(variant: str, port: int, args: argparse.Namespace) -> int:
    import logging

    import relay
    from relay.push import PushHandler, Unverified, asgi_app, wsgi_app

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = relay.Settings.load({
        "GC_PROJECT_ID": PROJECT, "CONCURRENCY": args.concurrency,
        "DEFAULT_RETRY_POLICY": None, "TRANSPORT": "memory",
    })
    handled = itertools.count()
    count = handled.__next__  # atomic under the GIL: the pool's threads share it

    if variant == "push-async":
        @relay.sub(TOPIC, prefix="push")
        async def handler(data: Any, **attrs: str) -> None:
            count()
    else:
        @relay.sub(TOPIC, prefix="push")
        def handler(data: Any, **attrs: str) -> None:
            count()

    push = PushHandler([handler], verifier=Unverified(), app=relay.App(settings))
    name = push.subscriptions[0].name
    if name != PUSH_NAME:
        raise SystemExit(f"relay names the push subscription {name!r}, not {PUSH_NAME!r}")
    if variant.startswith("wsgi"):
        app = wsgi_floor_app(count) if variant == "wsgi-floor" else wsgi_app(push)
        return serve_wsgi(app, port, args, handled)
    import uvicorn

    app = floor_app(count) if variant == "asgi-floor" else asgi_app(push)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=args.http, loop=args.loop,
        lifespan="on", log_level="warning", access_log=False,
    )
    # uvicorn re-raises the SIGTERM it exited on once it has shut down; with a
    # handler of our own in place, that returns here and the figures get printed.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.Server(config).run()
    times = os.times()
    print(json.dumps({"handled": next(handled), "cpu_s": times.user + times.system,
                      "middleware": [type(m).__name__ for m in push.app.middleware],
                      "concurrency": push.concurrency}), flush=True)
    return 0


def serve_wsgi(app: Any, port: int, args: argparse.Namespace, handled: Any) -> int:
    """gunicorn, one gthread worker of ``--concurrency`` threads, as docs/push.md
    suggests; the worker process prints the handler's count when it exits."""
    from gunicorn.app.base import BaseApplication

    def worker_exit(server: Any, worker: Any) -> None:
        print(json.dumps({"handled": next(handled), "worker_pid": os.getpid()}), flush=True)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"127.0.0.1:{port}", "workers": 1, "worker_class": "gthread",
                "threads": args.concurrency, "keepalive": 60, "loglevel": "warning",
                "accesslog": None, "worker_exit": worker_exit,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Server().run()
    return 0


def floor_app(count: Any) -> Any:
    """The least a push endpoint does, as a bare ASGI app: read the body, parse the
    envelope, decode ``message.data`` (base64, then JSON) and answer 200."""
    import orjson

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks, more = [], True
        while more:
            event = await receive()
            chunks.append(event.get("body", b""))
            more = event.get("more_body", False)
        envelope = orjson.loads(b"".join(chunks))
        orjson.loads(base64.b64decode(envelope["message"]["data"]))
        count()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"ack\n"})

    return app


def wsgi_floor_app(count: Any) -> Any:
    """``floor_app`` as a WSGI application."""
    import orjson

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        envelope = orjson.loads(body)
        orjson.loads(base64.b64decode(envelope["message"]["data"]))
        count()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                  ("Content-Length", "4")])
        return [b"ack\n"]

    return app


# --- the load generator, in its own process ---------------------------------

def request(i: int, port: int) -> bytes:
    """One push request as Pub/Sub sends it (wrapped format, no token)."""
    data = base64.b64encode(payload(i)).decode()
    message_id = str(10_000_000 + i)
    body = json.dumps({
        "message": {
            "attributes": ATTRIBUTES, "data": data,
            "messageId": message_id, "message_id": message_id,
            "publishTime": PUBLISH_TIME, "publish_time": PUBLISH_TIME,
        },
        "subscription": f"projects/{PROJECT}/subscriptions/{PUSH_NAME}",
    }, separators=(",", ":")).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "User-Agent: APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n\r\n"
    )
    return head.encode() + body


def server_cpu_seconds(pid: int) -> float:
    """The server's CPU: the process and its children (gunicorn's worker); a process
    gone raises (a figure short of it would be wrong)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return proc_cpu_seconds(pid, strict=True) + sum(proc_cpu_seconds(int(c), strict=True)
                                                    for c in children)


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def send_all(
    conns: list[Connection], reqs: list[bytes]
) -> tuple[list[float], dict[int, int]]:
    """Send ``reqs``, one in flight per connection; each one's latency, and status counts."""
    latency = [0.0] * len(reqs)
    statuses: dict[int, int] = {}
    todo = iter(range(len(reqs)))  # shared by the connections (one thread: safe)
    clock = time.perf_counter

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in todo:
            t0 = clock()
            writer.write(reqs[i])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latency[i] = clock() - t0
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(run(r, w) for r, w in conns))
    return latency, statuses


async def load(args: argparse.Namespace) -> dict[str, Any]:
    warm = [request(i, args.port) for i in range(args.warmup)]
    reqs = [request(args.warmup + i, args.port) for i in range(args.messages)]
    conns = [await asyncio.open_connection("127.0.0.1", args.port)
             for _ in range(args.connections)]
    _, warm_statuses = await send_all(conns, warm)
    mine0, cpu0, t0 = os.times(), server_cpu_seconds(args.server_pid), time.perf_counter()
    latency, statuses = await send_all(conns, reqs)
    wall = time.perf_counter() - t0
    cpu, mine1 = server_cpu_seconds(args.server_pid) - cpu0, os.times()
    for _, writer in conns:
        writer.close()
    ordered = sorted(latency)
    ok = statuses.get(200, 0) == args.messages and warm_statuses.get(200, 0) == args.warmup
    return {
        "ok": ok, "requests": args.messages, "wall_s": wall, "rate": args.messages / wall,
        "cpu_s": cpu, "cpu_us": 1e6 * cpu / args.messages,
        "p50_ms": 1e3 * ordered[len(ordered) // 2],
        "p99_ms": 1e3 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "load_cpu_us": 1e6 * (mine1.user + mine1.system - mine0.user - mine0.system)
        / args.messages,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "error": "" if ok else f"statuses {statuses} (warm-up {warm_statuses})",
    }


def run_load(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        out = asyncio.run(load(args))
    except Exception as exc:  # reported to the driver, which prints it
        out = failure(exc)
    emit(out)
    return 0


# --- the driver ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: "
                               f"{(proc.stderr.read() if proc.stderr else '')[-600:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout:.0f} s")


def run_push(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--concurrency", str(args.concurrency), "--http", args.http, "--loop", args.loop]
    server = subprocess.Popen([*me, "--serve", variant, "--port", str(port), *common],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, env=guard_environment(dict(os.environ)))
    result: dict[str, Any]
    try:
        wait_listening(port, server)
        proc = subprocess.run(
            [*me, "--load", "--port", str(port), "--server-pid", str(server.pid),
             "--messages", str(args.messages), "--warmup", str(args.warmup),
             "--connections", str(args.connections)],
            capture_output=True, text=True, cwd=ROOT, timeout=args.timeout, check=False)
        result = last_json(proc.stdout) or {
            "ok": False, "error": f"load generator exit {proc.returncode}: "
            f"{proc.stderr.strip()[-600:]}"}
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        result = {"ok": False, "error": str(exc)}
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # uvicorn's graceful exit: lifespan shutdown
        try:
            out, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            out, err = server.communicate()
    served = last_json(out)
    if served is None:
        result.update(ok=False, error=result.get("error") or f"server: {err.strip()[-600:]}")
    else:
        result["server"] = served
        if result.get("ok") and served["handled"] != args.messages + args.warmup:
            result.update(ok=False, error=f"the handler ran {served['handled']} times for "
                          f"{args.messages + args.warmup} requests")
    return result


def run_pull(contender: str, rnd: int, args: argparse.Namespace, emulator_pid: int | None,
             name: str | None = None, messages: int | None = None) -> dict[str, Any]:
    """One run of ``bench_consume.py``'s ``contender`` (``bench/consumer.py``)."""
    from bench_consume import run_consumer, sub_name

    consume = argparse.Namespace(concurrency=args.concurrency, flow=args.flow,
                                 timeout=args.timeout, py_spy_bin="py-spy")
    run = run_consumer(contender, rnd, name or sub_name(contender, rnd), consume, emulator_pid,
                       messages or args.messages)
    if not run.ok:
        return {"ok": False, "error": run.result.get("error", "failed")}
    return {"ok": True, "rate": run.rate, "cpu_us": run.us_per_msg,
            "wall_s": run.result["wall_s"], "config": run.result.get("config", {}),
            "emulator_cpu_us": 1e6 * run.emulator_cpu_s / max(1, run.result["received"])}


Rounds = list[dict[str, dict[str, Any]]]
#: The ratios of CPU per message reported (numerator, denominator), when both ran.
PAIRS = [("push-sync", "pull"), ("push-async", "pull"), ("wsgi-sync", "pull"),
         ("asgi-floor", "pull"), ("wsgi-floor", "pull"),
         ("push-sync", "pull-grpc"), ("push-async", "pull-grpc"),
         ("push-sync", "asgi-floor"), ("push-async", "asgi-floor"),
         ("wsgi-sync", "wsgi-floor")]


def describe(rnd: int, name: str, r: dict[str, Any]) -> None:
    if not r.get("ok"):
        print(f"round {rnd} {name:<10} FAILED: {r.get('error')}", flush=True)
        return
    extra = (f"  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  load generator CPU "
             f"{r['load_cpu_us']:.0f} µs/req" if "p50_ms" in r else "")
    print(f"round {rnd} {name:<10} {r['rate']:8,.0f} msgs/s  CPU {r['cpu_us']:6.1f} µs/msg"
          + extra, flush=True)


def column(rounds: Rounds, name: str, key: str) -> list[float | None]:
    return [r[name].get(key) if r[name].get("ok") else None for r in rounds]


def ratio(rounds: Rounds, num: str, den: str, key: str) -> tuple[float, list[float]]:
    """Median of the per-round ratios ``num / den`` (same round, same machine state)."""
    each = [a / b for a, b in zip(column(rounds, num, key), column(rounds, den, key), strict=True)
            if a is not None and b]
    return median(each), each


def cell(vals: list[float | None], fmt: str) -> str:
    ok = [v for v in vals if v is not None]
    if not ok:
        return "—"
    each = ", ".join("failed" if v is None else fmt.format(v) for v in vals)
    return f"**{fmt.format(median(ok))}** ({each})"


def render_table(rounds: Rounds, names: list[str]) -> str:
    lines = ["| variant | requests/s (wall) | / pull | CPU µs / msg | / pull "
             "| latency p50 / p99, ms |", "|---|---|---|---|---|---|"]
    for name in names:
        rel = {}
        for key in ("rate", "cpu_us"):
            value = ratio(rounds, name, "pull", key)[0] if "pull" in names else float("nan")
            rel[key] = "—" if value != value else f"{value:.2f}"
        if name in PULLS:
            lat = "—"
        else:
            p50 = [v for v in column(rounds, name, "p50_ms") if v is not None]
            p99 = [v for v in column(rounds, name, "p99_ms") if v is not None]
            lat = f"{median(p50):.1f} / {median(p99):.1f}" if p50 else "—"
        lines.append(f"| {LABELS[name]} | {cell(column(rounds, name, 'rate'), '{:,.0f}')} "
                     f"| {rel['rate']} | {cell(column(rounds, name, 'cpu_us'), '{:.1f}')} "
                     f"| {rel['cpu_us']} | {lat} |")
    return "\n".join(lines)


def ratio_rows(rounds: Rounds, names: list[str]) -> list[tuple[str, float, list[float]]]:
    return [(f"{num} / {den}", *ratio(rounds, num, den, "cpu_us"))
            for num, den in PAIRS if num in names and den in names]


def render_ratios(rows: list[tuple[str, float, list[float]]]) -> str:
    lines = ["| CPU per message | median | per round |", "|---|---|---|"]
    lines += [f"| {label} | **{med:.2f}** | {', '.join(f'{x:.2f}' for x in each)} |"
              for label, med, each in rows]
    return "\n".join(lines)


def verdict(rounds: Rounds, names: list[str]) -> str:
    if not {"push-sync", "pull"} <= set(names):
        return "push-sync or pull did not run: no comparison to draw."
    cpu = {n: median(v for v in column(rounds, n, "cpu_us") if v is not None) for n in names}
    rate = {n: median(v for v in column(rounds, n, "rate") if v is not None) for n in names}

    def times(num: str, den: str) -> str:
        return f"{ratio(rounds, num, den, 'cpu_us')[0]:.1f}x"

    def against(num: str) -> str:
        return ", ".join(f"{times(num, p)} {p}" for p in PULLS if p in names)

    grpc = f" ({cpu['pull-grpc']:.0f} µs on the grpc transport)" if "pull-grpc" in names else ""
    text = (f"A pulled message costs relay's worker {cpu['pull']:.0f} µs of CPU on the pubsub "
            f"transport{grpc}; a pushed one costs the server {cpu['push-sync']:.0f} µs under "
            f"uvicorn with a sync handler ({against('push-sync')}; medians of per-round "
            f"ratios)")
    if "push-async" in names:
        text += (f", {cpu['push-async']:.0f} µs with an `async def` handler awaited on the loop "
                 f"with no thread hop ({against('push-async')})")
    if "wsgi-sync" in names:
        text += f", {cpu['wsgi-sync']:.0f} µs under gunicorn ({against('wsgi-sync')})"
    text += "."
    floors = [(f, p) for f, p in (("asgi-floor", "push-sync"), ("wsgi-floor", "wsgi-sync"))
              if f in names and p in names]
    if floors:
        text += " The bare endpoints with no relay cost " + " and ".join(
            f"{cpu[f]:.0f} µs under {'uvicorn' if f.startswith('asgi') else 'gunicorn'} "
            f"(relay's sync push is {times(p, f)} that)" for f, p in floors) + "."
    return text + (f" One uvicorn process served {rate['push-sync']:,.0f} requests/s "
                   f"through relay (sync handler) on this machine, the load generator "
                   f"beside it on the same cores.")


#: What each variant ran, for the doc (formatted with the run's arguments).
DESCRIPTIONS = {
    "push-sync": "`relay.push.asgi_app(PushHandler([handler], verifier=Unverified()))` "
                 "under uvicorn (one process, `http=\"{http}\"`, `loop=\"{loop}\"`, access log "
                 "off); `handler` a sync `@sub` function that counts the decoded message, run "
                 "on the app's bounded pool (`CONCURRENCY={concurrency}`)",
    "push-async": "the same with an `async def` handler, awaited on the server's loop",
    "wsgi-sync": "`relay.push.wsgi_app(...)` of the same sync handler under gunicorn "
                 "(`gunicorn --worker-class gthread --threads {concurrency}`, one worker; the "
                 "handler runs on the request thread)",
    "asgi-floor": "no relay: what any push endpoint must do, as a bare ASGI app under the "
                  "same uvicorn: read the body, `orjson.loads` the envelope, base64-decode "
                  "and `orjson.loads` `message.data`, count, answer 200",
    "wsgi-floor": "the same bare endpoint as a WSGI app under the same gunicorn",
    "pull": "`bench_consume.py`'s `relay` variant (`bench/consumer.py relay`): "
            "`relay.Worker([handler])` on `TRANSPORT=\"pubsub\"` (google-cloud-pubsub), a sync "
            "`@sub` handler that counts, draining a fresh subscription of relay's Pub/Sub server "
            "(`relay.emulator`, one process for the run; the messages published to one "
            "subscription per variant and round up front; a warm-up drain first); its "
            "process's CPU (`time.process_time()`) from the stream opening to the last handler "
            "call; recorded: {pull}",
    "pull-grpc": "the same on `TRANSPORT=\"grpc\"`, relay's own transport "
                 "(`bench_consume.py`'s `relay-grpc` variant); recorded: {pull-grpc}",
}


def render_section(table: str, args: argparse.Namespace, info: dict[str, Any]) -> str:
    fill = {"http": args.http, "loop": args.loop, "concurrency": args.concurrency}
    for name, config in info["pull_config"].items():
        fill[name] = ", ".join(f"`{k}={v}`" for k, v in config.items()) or "nothing (it failed)"
    described = "\n".join(f"* **{n}**: {DESCRIPTIONS[n].format_map(fill)}." for n in info["names"])
    failed = "".join(f"\n**{line}**\n" for line in info["failures"])
    return f"""{HEADING}

Written by one command (it rewrites only this section):

```
{info['command']}
```

{run_line(info['started'], info['wall_s'], info['revision'])}
* Machine: {os.cpu_count()} cores, **shared with four other engineers' work** (tests and \
benchmarks ran at the same time) and noisy; the server, the load generator and the broker \
share those cores. {linux_python()}
* Versions: {info['versions']}
* {args.rounds} round(s), interleaved, order rotated; every variant runs in fresh processes
  in each round, on the same {args.messages:,} messages: `bench/_common.payload(i)`,
  {info['size']} bytes of JSON with the attributes {', '.join(f'`{k}`' for k in ATTRIBUTES)}
  (the consume benchmark's messages). relay's settings: `CONCURRENCY={args.concurrency}`,
  `DEFAULT_RETRY_POLICY=None`, the default middleware (`LoggingMiddleware`), logging at
  WARNING.
* Served variants: a load generator in its own process (asyncio on uvloop) keeps
  {args.connections} HTTP/1.1 connections to 127.0.0.1 open, one request in flight on
  each, and POSTs Pub/Sub's wrapped envelope (`message.data` in base64, `attributes`,
  `messageId`, `publishTime`, `subscription`; ~{info['request_size']} bytes with the
  headers): {args.warmup:,} requests to warm up (not counted), then {args.messages:,}.
  requests/s: wall time of those; CPU: the server's user + system time
  (`/proc/<pid>/stat`, all threads, gunicorn's worker included) over the same span, per
  request; latency: request written to response read. Every response was checked to
  be 200 and the handler's count to match. **Token verification is off**
  (`Unverified()`): there is no Google-signed token on loopback; in production
  `OidcVerifier` adds a signature check per request to these figures.

{described}

Why push costs more than pull: a pulled message arrives with many others in one
response on one stream; a pushed one is an HTTP request of its own (parse it, read
the body, one turn of the server's loop, write the response), which is what the
floors measure. relay's push path (`PushHandler`: envelope parsing, the
`Processor`, waiting for the verdict, and for a sync handler under ASGI the hop
to the pool and back) is the difference between a floor and its push row. The
pull rows drain relay's Pub/Sub server; the consume table above drains Google's
emulator, so its figures are not these.

Bold: median over the rounds (each round in brackets); / pull: median of the
per-round ratios to pull in the same round. CPU per message is the figure to
read: requests/s measures this shared machine as much as relay (the load
generator spent {info['load_cpu_us']:.0f} µs of CPU per request on the same cores).

{table}

CPU per message, ratios within each round, median over the rounds:

{info['ratios']}
{failed}
{info['verdict']}
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--warmup", type=int, default=2000, help="uncounted requests first")
    parser.add_argument("--connections", type=int, default=32,
                        help="keep-alive connections of the load generator")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="relay CONCURRENCY (push: the sync pool; pull: the worker)")
    parser.add_argument("--flow", type=int, default=1000, help="pull: max outstanding messages")
    parser.add_argument("--http", default="httptools", help="uvicorn's --http (h11, httptools)")
    parser.add_argument("--loop", default="uvloop", help="uvicorn's --loop (asyncio, uvloop)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC}")
    parser.add_argument("--serve", choices=VARIANTS[:-1],
                        help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    guard_environment()
    if args.serve:
        return serve(args.serve, args.port, args)
    if args.load:
        return run_load(args)
    names = [n for n in args.variants.split(",") if n]
    if unknown := set(names) - set(VARIANTS):
        parser.error(f"unknown variant(s) {sorted(unknown)}; known: {VARIANTS}")
    for server, prefixes in (("uvicorn", ("push", "asgi")), ("gunicorn", ("wsgi",))):
        if any(n.startswith(prefixes) for n in names) and not find_spec(server):
            parser.error(f"{server} is not installed: run through `uv run --group bench ...`")

    t0, started = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    rounds: Rounds = []
    with contextlib.ExitStack() as stack:
        emulator_pid = None
        if pulls := [n for n in names if n in PULLS]:
            from bench_consume import provision_and_publish, sub_name

            from relay.emulator import running_emulator

            emulator = stack.enter_context(running_emulator(kind="relay"))
            emulator_pid = emulator.pid
            print(f"{emulator.label} on {emulator.address} (pid {emulator.pid})", flush=True)
            subs = [f"warmup-{TOPIC}", *(sub_name(PULLS[n], r) for r in range(args.rounds)
                                         for n in pulls)]
            took = provision_and_publish(subs, args.messages)
            print(f"published {args.messages:,} messages to {len(subs)} subscriptions in "
                  f"{took:.1f} s", flush=True)
            if args.warmup:
                warm = run_pull(PULLS[pulls[0]], -1, args, emulator_pid, subs[0],
                                min(args.warmup, args.messages))
                print("pull warm-up: " + ("ok" if warm["ok"] else warm["error"]), flush=True)
        for rnd in range(args.rounds):
            shift = rnd % len(names)
            results: dict[str, dict[str, Any]] = {}
            for name in names[shift:] + names[:shift]:
                results[name] = (run_pull(PULLS[name], rnd, args, emulator_pid)
                                 if name in PULLS else run_push(name, args))
                describe(rnd, name, results[name])
            rounds.append({n: results[n] for n in names})
    wall = time.monotonic() - t0

    table = render_table(rounds, names)
    print(f"\n{table}\n")
    rows = ratio_rows(rounds, names)
    print(render_ratios(rows) + "\n")
    print(f"{args.messages:,} messages, {args.rounds} round(s); wall time {wall:.0f} s")
    lost = [f"{n}: failed in every round: {rounds[0][n].get('error')}" for n in names
            if rounds and not any(r[n].get("ok") for r in rounds)]
    for line in lost:
        print(line)
    push_ok = [r[n] for r in rounds for n in names if n not in PULLS and r[n].get("ok")]
    pull_config = {n: next((r[n].get("config", {}) for r in rounds if r[n].get("ok")), {})
                   for n in names if n in PULLS}
    info = {
        "command": command_line("uv run --group bench python bench/bench_push.py", argv),
        "started": started, "wall_s": wall, "failures": lost, "revision": revision(),
        "versions": versions("relay-pubsub", "uvicorn", "httptools", "uvloop", "gunicorn",
                             "google-cloud-pubsub", "grpcio", "orjson"),
        "size": len(payload(0)), "request_size": len(request(0, 65535)),
        "verdict": verdict(rounds, names) if rounds else "", "names": names,
        "ratios": render_ratios(rows),
        "pull_config": pull_config,
        "load_cpu_us": median(r["load_cpu_us"] for r in push_ok),
    }
    print(info["verdict"])
    if not args.no_write:
        write_section(DOC, SECTION, render_section(table, args, info), heading="")
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0 if all(r.get("ok") for rnd in rounds for r in rnd.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
