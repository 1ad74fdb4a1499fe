"""One consumer run, in its own process, so its CPU time is its own.

Usage (``bench_consume.py`` runs it; ``PUBSUB_EMULATOR_HOST`` must be set)::

    python bench/consumer.py CONTENDER --subscription NAME --messages N [options]

CONTENDER is ``bare``, ``relay`` or ``rele``, each draining an existing
subscription (already holding N messages) until its handler has run N times or
``--timeout`` passes. The process's CPU time (``time.process_time()``, all
threads) and wall time are taken from just before the stream is opened to the
N-th handler call; client construction and provisioning are outside the window.
The last line on stdout is a JSON object with the figures.

``--log warning`` (the default) configures logging at WARNING, so INFO records
are never formatted. ``--log info`` sets the contender's own logger tree
(``relay`` or ``rele``) to INFO with a plain formatter writing to ``os.devnull``:
the cost of the per-message INFO line, formatted and written.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import PROJECT, TOPIC, emit, guard_environment


class Counter:
    """Counts handler calls; sets ``done`` at the N-th and notes when it happened."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first_at = 0.0
        self.done_at = 0.0
        self.cpu_at_done = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first_at = time.perf_counter()
            if self.count == self.target:
                self.done_at = time.perf_counter()
                self.cpu_at_done = time.process_time()
                self.done.set()


@dataclass
class Result:
    contender: str
    subscription: str
    messages: int
    received: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    first_message_s: float = 0.0
    ok: bool = False
    error: str = ""
    config: dict[str, Any] = field(default_factory=dict)


def configure_logging(mode: str, tree: str | None) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if mode == "info" and tree:
        sink = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger = logging.getLogger(tree)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


def _rusage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


# --------------------------------------------------------------------------- bare
def run_bare(args: argparse.Namespace, counter: Counter) -> tuple[Callable[[], None], Any]:
    import orjson
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

    client = pubsub_v1.SubscriberClient()
    path = client.subscription_path(PROJECT, args.subscription)
    loads, hit = orjson.loads, counter.hit

    def callback(message: Any) -> None:
        loads(message.data)
        message.ack()
        hit()

    executor = ThreadPoolExecutor(
        max_workers=args.concurrency, thread_name_prefix="ThreadPoolExecutor-ThreadScheduler"
    )
    flow = pubsub_v1.types.FlowControl(max_messages=args.flow)

    def start() -> None:
        state["future"] = client.subscribe(
            path, callback, flow_control=flow, scheduler=ThreadScheduler(executor)
        )

    state: dict[str, Any] = {}

    def stop() -> None:
        future = state.get("future")
        if future is not None:
            future.cancel()
            future.result(timeout=30)
        client.close()

    return start, stop


# -------------------------------------------------------------------------- relay
def run_relay(args: argparse.Namespace, counter: Counter) -> tuple[Callable[[], None], Any]:
    """relay's Worker on google's client (``TRANSPORT="pubsub"``, named: not the default)."""
    import relay

    os.environ.setdefault("RELAY_TRANSPORT", "pubsub")

    settings = relay.Settings.load(
        {
            "GC_PROJECT_ID": PROJECT,
            "CONCURRENCY": args.concurrency,
            "FLOW_MAX_MESSAGES": args.flow,
            "DEFAULT_RETRY_POLICY": None,
        }
    )
    hit = counter.hit
    prefix = args.subscription.removesuffix(f"-{TOPIC}")

    @relay.sub(TOPIC, prefix=prefix)
    def handler(data: Any, **attrs: str) -> None:
        hit()

    worker = relay.Worker([handler], settings=settings)
    if worker.subscriptions[0].name != args.subscription:
        raise SystemExit(f"relay would consume {worker.subscriptions[0].name}")
    worker.setup()  # the subscription exists; this only checks it (outside the window)
    args.config_out.update(
        concurrency=worker.concurrency,
        flow_max_messages=settings.flow_max_messages,
        middleware=[type(m).__name__ for m in worker.middleware],
        transport=settings.transport,
    )

    def stop() -> None:
        worker.stop(timeout=30)

    return worker.start, stop


# --------------------------------------------------------------------------- Relé
def run_rele(args: argparse.Namespace, counter: Counter) -> tuple[Callable[[], None], Any]:
    # rele.client reads PUBSUB_EMULATOR_HOST at import: it is set by now.
    import rele.worker
    from rele.config import Config
    from rele.middleware import register_middleware
    from rele.subscription import Subscription

    # NOT rele.config.setup(): it builds the global Publisher through
    # Config.credentials -> google.auth.default(). Middleware is registered the
    # way setup() does it, from the default MIDDLEWARE list.
    config = Config({"GC_PROJECT_ID": PROJECT, "THREADS_PER_SUBSCRIPTION": args.concurrency})
    register_middleware(config)
    # Worker._boostrap_consumption probes TCP port 80 of www.google.com (or of
    # CLIENT_OPTIONS["api_endpoint"]) before every stream opens; this sandbox
    # cannot reach it, so the probe is answered "connected" without a socket.
    rele.worker.check_internet_connection = lambda remote_server: True

    hit = counter.hit
    prefix = args.subscription.removesuffix(f"-{TOPIC}")

    def handler(data: Any, **kwargs: Any) -> None:
        hit()

    subscription = Subscription(handler, TOPIC, prefix=prefix)
    if subscription.name != args.subscription:
        raise SystemExit(f"Relé would consume {subscription.name}")
    worker = rele.worker.Worker(
        [subscription],
        client_options=config.client_options,
        gc_project_id=PROJECT,
        credentials=None,
        default_ack_deadline=60,
        threads_per_subscription=config.threads_per_subscription,
    )
    worker.setup()  # AlreadyExists -> update (a no-op without a retry policy)
    args.config_out.update(
        threads_per_subscription=config.threads_per_subscription,
        flow_max_messages="google default (1000): Relé passes no flow_control",
        middleware=config.middleware,
    )

    def stop() -> None:
        # Worker.stop() ends in sys.exit(0); do its work without that.
        for future in worker._futures.values():
            future.cancel()
            future.result(timeout=30)
        worker._subscriber.close()

    return worker.start, stop


# -------------------------------------------------------------- relay on gRPC
def run_relay_grpc(args: argparse.Namespace, counter: Counter) -> tuple[Callable[[], None], Any]:
    """relay's Worker on its own gRPC transport (TRANSPORT="grpc"), else as ``relay``."""
    os.environ["RELAY_TRANSPORT"] = "grpc"
    return run_relay(args, counter)


CONTENDERS = {"bare": (run_bare, None), "relay": (run_relay, "relay"), "rele": (run_rele, "rele"),
              "relay-grpc": (run_relay_grpc, "relay")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--flow", type=int, default=1000)
    parser.add_argument("--log", choices=("warning", "info"), default="warning")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        parser.error("PUBSUB_EMULATOR_HOST is not set: run this through bench_consume.py")
    guard_environment()
    runner, tree = CONTENDERS[args.contender]
    configure_logging(args.log, tree)
    args.config_out = {"log": args.log}

    result = Result(args.contender, args.subscription, args.messages, config=args.config_out)
    counter = Counter(args.messages)
    stop: Callable[[], None] | None = None
    try:
        start, stop = runner(args, counter)
        u0, s0 = _rusage()
        c0, t0 = time.process_time(), time.perf_counter()
        start()
        finished = counter.done.wait(args.timeout)
        if finished:
            c1, t1 = counter.cpu_at_done, counter.done_at
        else:
            c1, t1 = time.process_time(), time.perf_counter()
        u1, s1 = _rusage()
        result.received = counter.count
        result.wall_s = t1 - t0
        result.cpu_s = c1 - c0
        result.user_s, result.sys_s = u1 - u0, s1 - s0
        result.first_message_s = (counter.first_at - t0) if counter.count else float("nan")
        result.ok = finished
        if not finished:
            result.error = f"timeout: {counter.count}/{args.messages} after {args.timeout} s"
    except Exception as exc:  # report, do not hide
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if stop is not None:
            try:
                stop()
            except Exception as exc:
                result.error = result.error or f"stop failed: {type(exc).__name__}: {exc}"
    emit(asdict(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
