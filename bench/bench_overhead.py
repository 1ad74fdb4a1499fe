"""relay's per-message CPU overhead, in process, without a network.

    uv run python bench/bench_overhead.py [--messages 20000] [--repeat 5] [--profile]

Single-thread part: the same pre-built messages of the memory transport
(``MemoryMessage``, ~300-byte JSON, 2 attributes) go through

* ``bare``: ``orjson.loads(message.data)`` then ``message.ack()``;
* ``processor, no middleware``: ``Processor.process`` with an empty chain;
* ``processor, default chain``: with ``LoggingMiddleware``, logging at WARNING;
* ``processor, default chain, INFO``: the ``relay`` logger at INFO, each record
  formatted and written to ``os.devnull``.

Threaded part, on the memory transport (its delivery thread and bookkeeping
included in both): a subscriber whose callback decodes and acks on the delivery
thread, against a ``relay.Worker`` (handoff to its executor, processor, ack).

CPU time is ``time.process_time()``; each variant runs ``--repeat`` times,
interleaved; medians are reported. ``--profile`` prints cProfile's top costs of
the default chain. Figures only; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson
from _common import ATTRIBUTES, median, payload
from stacks import shorten

from relay.codec import Codec
from relay.middleware import MiddlewareChain
from relay.processing import Processor
from relay.settings import Settings
from relay.subscription import Subscription, sub
from relay.transports.base import FlowControl, SubscriptionSpec
from relay.transports.memory import MemoryMessage, MemoryTransport, PublishedRecord
from relay.worker import Worker

TOPIC = "overhead"
SETTINGS = Settings.load({"GC_PROJECT_ID": "relay-bench", "TRANSPORT": "memory"}, environ={})
RELAY_LOGGER = logging.getLogger("relay")


def make_messages(n: int) -> list[MemoryMessage]:
    now = datetime.now(timezone.utc)
    return [
        MemoryMessage(PublishedRecord(TOPIC, payload(i), ATTRIBUTES, "", str(i + 1), now), 1)
        for i in range(n)
    ]


def make_sub(counter: list[int]) -> Subscription:
    @sub(TOPIC)
    def handler(data: Any, **attrs: str) -> None:
        counter[0] += 1

    return handler.resolve(SETTINGS)


def set_info_logging(on: bool) -> None:
    for h in list(RELAY_LOGGER.handlers):
        RELAY_LOGGER.removeHandler(h)
    if on:
        handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        RELAY_LOGGER.addHandler(handler)
        RELAY_LOGGER.setLevel(logging.INFO)
        RELAY_LOGGER.propagate = False
    else:
        RELAY_LOGGER.setLevel(logging.WARNING)
        RELAY_LOGGER.propagate = True


# ----------------------------------------------------------- single-thread runs
def loop_bare(messages: list[MemoryMessage]) -> None:
    loads = orjson.loads
    for m in messages:
        loads(m.data)
        m.ack()


def loop_processor(chain: MiddlewareChain) -> Callable[[list[MemoryMessage]], None]:
    counter = [0]
    subscription = make_sub(counter)
    process = Processor(chain, Codec()).process

    def run(messages: list[MemoryMessage]) -> None:
        for m in messages:
            process(subscription, m)

    return run


def timed(fn: Callable[[list[MemoryMessage]], None], n: int) -> float:
    messages = make_messages(n)
    c0 = time.process_time()
    fn(messages)
    return (time.process_time() - c0) / n * 1e6


# ----------------------------------------------------------------- threaded runs
def threaded_bare(n: int, timeout: float) -> float:
    transport = MemoryTransport()
    transport.ensure_topic(TOPIC)
    transport.create_subscription(SubscriptionSpec("bare", TOPIC))
    for i in range(n):
        transport.publish(TOPIC, payload(i), ATTRIBUTES)
    done = threading.Event()
    count = [0]
    loads = orjson.loads

    def callback(m: Any) -> None:
        loads(m.data)
        m.ack()
        count[0] += 1
        if count[0] == n:
            done.set()

    c0 = time.process_time()
    transport.subscribe("bare", callback, FlowControl(max_messages=1000))
    done.wait(timeout)
    cpu = time.process_time() - c0
    transport.close()
    return cpu / n * 1e6


def threaded_worker(n: int, timeout: float) -> float:
    transport = MemoryTransport()
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    @sub(TOPIC)
    def handler(data: Any, **attrs: str) -> None:
        with lock:
            count[0] += 1
            if count[0] == n:
                done.set()

    settings = SETTINGS.replace(concurrency=10, flow_max_messages=1000)
    worker = Worker([handler], settings=settings, transport=transport)
    worker.setup()
    for i in range(n):
        transport.publish(TOPIC, payload(i), ATTRIBUTES)
    c0 = time.process_time()
    worker.start()
    done.wait(timeout)
    cpu = time.process_time() - c0
    worker.stop(timeout=10)
    return cpu / n * 1e6


# --------------------------------------------------------------------- profile
def profile(n: int, top: int) -> tuple[str, list[dict[str, Any]]]:
    set_info_logging(False)
    run = loop_processor(MiddlewareChain.from_settings(SETTINGS))
    messages = make_messages(n)
    prof = cProfile.Profile()
    prof.enable()
    run(messages)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    rows = []
    for (path, line, func), (_cc, ncalls, tottime, cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda kv: kv[1][2], reverse=True  # type: ignore[attr-defined]
    )[:top]:
        short = shorten(path)
        rows.append({
            "function": f"{short}:{line}({func})",
            "calls_per_msg": ncalls / n,
            "tottime_us_per_msg": tottime / n * 1e6,
            "cumtime_us_per_msg": cumtime / n * 1e6,
        })
    return out.getvalue(), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=60.0, help="per threaded run")
    parser.add_argument("--profile", action="store_true", help="print cProfile's full top list")
    parser.add_argument("--json", action="store_true", help="one JSON line (for bench_consume)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    n = args.messages

    single: dict[str, Callable[[list[MemoryMessage]], None]] = {
        "bare (orjson.loads + ack)": loop_bare,
        "processor, no middleware": loop_processor(MiddlewareChain(())),
        "processor, default chain (WARNING)": loop_processor(
            MiddlewareChain.from_settings(SETTINGS)
        ),
        "processor, default chain (INFO to devnull)": loop_processor(
            MiddlewareChain.from_settings(SETTINGS)
        ),
    }
    samples: dict[str, list[float]] = {k: [] for k in single}
    samples["memory transport, bare callback"] = []
    samples["memory transport, relay.Worker"] = []
    for _ in range(args.repeat):
        for name, fn in single.items():
            set_info_logging("INFO" in name)
            samples[name].append(timed(fn, n))
        set_info_logging(False)
        samples["memory transport, bare callback"].append(threaded_bare(n, args.timeout))
        samples["memory transport, relay.Worker"].append(threaded_worker(n, args.timeout))

    results = {k: median(v) for k, v in samples.items()}
    bare = results["bare (orjson.loads + ack)"]
    mem_bare = results["memory transport, bare callback"]
    rows = [
        "| path | CPU µs / msg (median) | minus its bare | runs |",
        "|---|---|---|---|",
    ]
    for name, value in results.items():
        base = mem_bare if name.startswith("memory") else bare
        rows.append(
            f"| {name} | {value:.2f} | {value - base:+.2f} "
            f"| {', '.join(f'{x:.2f}' for x in samples[name])} |"
        )
    table_md = "\n".join(rows)
    text, prof_rows = profile(n, args.top)
    prof_md = "\n".join(
        [
            "| function | calls / msg | own µs / msg | cumulative µs / msg |",
            "|---|---|---|---|",
        ]
        + [
            f"| `{r['function']}` | {r['calls_per_msg']:.1f} | {r['tottime_us_per_msg']:.2f} "
            f"| {r['cumtime_us_per_msg']:.2f} |"
            for r in prof_rows
        ]
    )
    doc_md = (
        f"{n:,} messages per run, {args.repeat} interleaved runs per path; \"minus its bare\" "
        "subtracts the bare path of the same kind (single-thread or memory transport).\n\n"
        f"{table_md}\n\n"
        f"cProfile of `processor, default chain (WARNING)` over {n:,} messages, top "
        f"{args.top} by own time (cProfile's instrumentation inflates every call; read the "
        "shares, not the absolute values):\n\n"
        f"{prof_md}\n"
    )
    if args.json:
        print(json.dumps({"results": results, "samples": samples, "profile": prof_rows,
                          "table_md": table_md, "doc_md": doc_md}))
    else:
        print(table_md)
        print()
        print(text if args.profile else prof_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
