"""``relay-cli``: run a worker, plan provisioning, list subscriptions, publish, run the emulator.

Signals and exit codes live here and only here (library code never exits or
installs signal handlers):

* ``0``: the command did what was asked; for ``run``, it was stopped by
  SIGINT/SIGTERM and drained (a drain that hit ``DRAIN_TIMEOUT`` is logged as a
  warning but still exits 0: the stop was requested).
* ``1``: a runtime failure: provisioning, the transport, a publish, the emulator.
* ``2``: a configuration or usage error: unknown setting, bad or duplicate
  subscriptions, a subs module that fails to import, missing project id, bad
  arguments. One line on stderr, no traceback.
* ``3``: ``plan --check`` found that Pub/Sub differs from the code.

A second SIGINT/SIGTERM while ``run`` is draining abandons the drain: the
emulator (if any) is stopped and the process exits 1 at once. A SIGINT that was
ignored when the process started (a worker started with ``&`` by a shell
script) stays ignored: the terminal's Ctrl-C is the script's to handle.

Settings come from ``--settings MODULE`` (a module holding ``RELAY = {...}``),
else the module named by ``RELAY_SETTINGS``, else ``RELAY_*`` environment
variables. When an emulator is in use (``--emulator`` or
``PUBSUB_EMULATOR_HOST``) and no project id is configured, ``relay-local`` is
used.

This module imports nothing from google-cloud-pubsub: the transport is imported
when a command first needs it, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from relay.discovery import discover, import_module
from relay.errors import ConfigurationError, RelayError
from relay.redaction import redact, shown
from relay.settings import Settings
from relay.subscription import Subscription

if TYPE_CHECKING:
    from relay.emulator import Emulator

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
#: ``plan --check``: Pub/Sub does not match the code.
EXIT_DIFFERS = 3
#: Project id used against an emulator when none is configured.
EMULATOR_PROJECT = "relay-local"
#: The line ``run`` prints once the worker is consuming (scripts wait for it).
READY = "relay-cli: worker running; press Ctrl-C (or send SIGTERM) to stop"

logger = logging.getLogger("relay.cli")


class _ForcedExit(RelayError):
    """Raised in the main thread by a second stop signal."""


# --------------------------------------------------------------------- helpers
def _error(message: str) -> None:
    """The one error line on stderr; never a private key, whatever the message quotes."""
    print(f"relay-cli: error: {redact(message)}", file=sys.stderr, flush=True)


def _configure_logging(level: str, fmt: str = "text") -> None:
    """Text or JSON logs at ``level``, unless the app (settings or subs) configured logging."""
    from relay.logs import configure_logging

    configure_logging(level, fmt)


def _cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def load_settings(module: str | None) -> Settings:
    """``--settings`` module, else ``RELAY_SETTINGS``, else ``RELAY_*`` variables."""
    _cwd_on_path()
    name = module or os.environ.get("RELAY_SETTINGS")
    if not name:
        return Settings.load()
    return Settings.from_object(import_module(name, what="settings module"))


def _with_project(settings: Settings) -> Settings:
    """Fail early without a project id (Pub/Sub transport), or default it on an emulator."""
    if settings.transport != "pubsub":
        return settings
    try:
        settings.project_id()
    except ConfigurationError:
        if not settings.emulator_host:
            raise
        logger.info("no GC_PROJECT_ID configured; using %r on the emulator", EMULATOR_PROJECT)
        return settings.replace(gc_project_id=EMULATOR_PROJECT)
    return settings


class _StopSignals:
    """SIGINT/SIGTERM set ``requested``; a second one raises ``_ForcedExit``."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            raise _ForcedExit(f"{name} received again: abandoning the drain")
        logger.info("%s received: stopping gracefully (send it again to force)", name)
        self.requested.set()

    def __enter__(self) -> _StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum == signal.SIGINT and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # started in the background by a shell: Ctrl-C is not for us
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def wait(self) -> None:
        while not self.requested.wait(0.5):
            pass


@contextlib.contextmanager
def _emulator(port: int | None) -> Iterator[Emulator]:
    """Run the emulator for the block, with PUBSUB_EMULATOR_HOST pointing at it.

    ``Emulator.start()`` stops the process itself if it is interrupted half-way,
    so no Java is left behind whatever happens.
    """
    from relay.emulator import running_emulator

    logger.info("starting the Pub/Sub emulator")
    with running_emulator(port) as emulator:
        try:
            yield emulator
        finally:
            logger.info("stopping the Pub/Sub emulator (pid %s)", emulator.pid)


# -------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings)
    if args.provisioning:
        settings = settings.replace(provisioning=args.provisioning)
    subscriptions = discover(args.root, args.subs, settings=settings)
    if not subscriptions:
        raise ConfigurationError(
            f"no subscriptions found under {os.path.abspath(args.root)}: declare @sub handlers "
            "in a subs.py module (or a subs/ package), or name modules with --subs"
        )
    _configure_logging(args.log_level, args.log_format or settings.log_format)
    if args.emulator and settings.transport == "memory":
        logger.warning("--emulator with TRANSPORT 'memory': the worker will not use it")
    with _StopSignals() as stop, contextlib.ExitStack() as stack:
        try:
            if args.emulator:
                emulator = stack.enter_context(_emulator(args.emulator_port))
                print(
                    f"relay-cli: Pub/Sub emulator running at {emulator.address} "
                    f"(pid {emulator.pid}); to use it from another shell: "
                    f"export PUBSUB_EMULATOR_HOST={emulator.address}",
                    flush=True,
                )
            if stop.requested.is_set():  # stopped while the emulator was starting
                return EXIT_OK
            return _run_worker(
                _with_project(settings), subscriptions, stop, health_port=args.health_port
            )
        except _ForcedExit as exc:
            logger.error("%s", exc)
            stack.close()  # stop the emulator before leaving
            logging.shutdown()
            sys.stdout.flush()
            # Handler threads may still be running and would hold up interpreter exit.
            os._exit(EXIT_FAILURE)


def _run_worker(
    settings: Settings, subscriptions: list[Subscription], stop: _StopSignals,
    *, health_port: int | None = None,
) -> int:
    import relay
    from relay.health import HealthServer

    if health_port is not None:  # --health-port beats HEALTH_PORT, validated the same way
        settings = settings.replace(health_port=health_port)
    app = relay.configure(settings)  # handlers that publish use the same settings
    worker = app.worker(subscriptions)
    health: HealthServer | None = None
    try:
        if settings.health_port is not None:
            # Up before provisioning: /livez answers meanwhile, /readyz says 503 until
            # the worker consumes.
            health = HealthServer(
                worker, host=settings.health_host, port=settings.health_port,
                failure_threshold=settings.health_failure_threshold,
            ).start()
            print(
                f"relay-cli: health probes at {health.url}/livez and {health.url}/readyz",
                flush=True,
            )
        if not stop.requested.is_set():
            worker.setup()
        if not stop.requested.is_set():  # a signal during provisioning: do not start
            worker.start()
            print(READY, flush=True)
            stop.wait()
    finally:
        worker.stop()
        if health is not None:
            health.stop()
        relay.reset()
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """Print what provisioning would change, without changing anything."""
    from relay import provisioning
    from relay.app import build_transport
    from relay.subscription import check_unique

    settings = load_settings(args.settings)
    declared = discover(args.root, args.subs, settings=settings)
    if not declared:
        raise ConfigurationError(
            f"no subscriptions found under {os.path.abspath(args.root)}: nothing to plan"
        )
    settings = _with_project(settings)
    _configure_logging(args.log_level)
    resolved = check_unique(s.resolve(settings) for s in declared)
    wanted = provisioning.desired(resolved, settings)
    transport = build_transport(settings)
    try:
        plan = provisioning.plan(transport, wanted)
    finally:
        transport.close()
    print(plan.render(show_unchanged=not args.changes_only), flush=True)
    if args.check and not plan.in_sync:
        _error(f"Pub/Sub differs from the code ({len(plan.problems())} difference(s))")
        return EXIT_DIFFERS
    return EXIT_OK


def cmd_subs(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings)
    subscriptions = discover(args.root, args.subs, settings=settings)
    if not subscriptions:
        print(f"no subscriptions found under {os.path.abspath(args.root)}", file=sys.stderr)
        return EXIT_OK
    rows = [("NAME", "TOPIC", "FILTERS", "HANDLER", "MODE")]
    for declared in subscriptions:
        s = declared.resolve(settings)
        filters = [getattr(f, "__name__", repr(f)) for f in s.filters]
        if s.backend_filter_by:
            filters.append(f"backend: {s.backend_filter_by}")
        mode = "async" if s.is_async else "sync"
        rows.append((s.name, s.full_topic, ", ".join(filters) or "-", s.handler_name, mode))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
    return EXIT_OK


def _parse_attrs(pairs: Sequence[str]) -> dict[str, str]:
    attrs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--attr {pair!r}: expected KEY=VALUE")
        attrs[key] = value
    return attrs


def cmd_publish(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise ConfigurationError(
            f"DATA is not valid JSON ({exc}): {shown(args.data)}; to send a string, quote it: "
            "'\"hello\"'"
        ) from None
    attrs = _parse_attrs(args.attr)
    settings = _with_project(load_settings(args.settings))
    _configure_logging(args.log_level)
    from relay.app import App

    app = App(settings)
    try:
        future = app.publisher.publish(
            args.topic, data, ordering_key=args.ordering_key, attrs=attrs,
            blocking=True, timeout=args.timeout,
        )
        print(future.result(), flush=True)
    finally:
        app.close()
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    with _StopSignals() as stop, _emulator(args.port) as emulator:
        print(f"export PUBSUB_EMULATOR_HOST={emulator.address}", flush=True)
        logger.info("Pub/Sub emulator running (pid %s); Ctrl-C to stop", emulator.pid)
        process = emulator.process
        while not stop.requested.wait(0.5):
            if process is not None and process.poll() is not None:
                raise RelayError(
                    f"the emulator exited with code {process.returncode}; its log: "
                    f"{emulator.log_tail()}"
                )
    return EXIT_OK


# ---------------------------------------------------------------------- parser
def _common(parser: argparse.ArgumentParser, *, subs: bool, level: str = "INFO") -> None:
    parser.add_argument(
        "--settings", metavar="MODULE",
        help="module holding RELAY = {...} (default: $RELAY_SETTINGS, else RELAY_* variables)",
    )
    if subs:
        parser.add_argument(
            "--subs", metavar="MODULE", action="extend", nargs="+", default=[],
            help="import these modules instead of finding subs.py files under --root",
        )
        parser.add_argument(
            "--root", metavar="DIR", default=".",
            help="directory to search for subs.py modules and subs/ packages (default: .)",
        )
    parser.add_argument(
        "--log-level", default=level, type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help=f"(default: {level})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay-cli",
        description="Run relay workers, list subscriptions and publish to Google Cloud Pub/Sub.",
        epilog="Exit codes: 0 done, 1 runtime failure, 2 configuration or usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="provision and consume every discovered subscription until SIGINT/SIGTERM",
        description="Discover subscriptions, create or update them on Pub/Sub, and consume "
        "them until SIGINT/SIGTERM, then drain in-flight handlers and exit 0.",
    )
    _common(run, subs=True)
    run.add_argument(
        "--emulator", action="store_true",
        help="start the local Pub/Sub emulator for the life of the command",
    )
    run.add_argument(
        "--emulator-port", type=int, metavar="PORT",
        help="port for --emulator (default: a free one)",
    )
    run.add_argument(
        "--health-port", type=int, metavar="PORT",
        help="serve the /livez and /readyz probes on this port, on HEALTH_HOST (0: a free "
        "one, printed at start; default: HEALTH_PORT, else no probe server)",
    )
    run.add_argument(
        "--log-format", type=str.lower, choices=["text", "json"],
        help="text: one readable line per record; json: one JSON object per line "
        "(default: LOG_FORMAT, else text)",
    )
    run.add_argument(
        "--provisioning", choices=["create", "verify", "off"],
        help="create: create and update topics and subscriptions to match the code; "
        "verify: read-only, fail if anything is missing or differs; off: no admin calls "
        "(default: PROVISIONING, else create)",
    )
    run.set_defaults(func=cmd_run)

    plan = commands.add_parser(
        "plan", help="show how Pub/Sub differs from the declared subscriptions (read-only)",
        description="Compare the discovered subscriptions (and their topics, dead-letter "
        "topics and bucket notifications) with what exists on Pub/Sub (and Cloud Storage), "
        "using read-only calls, and print the difference: + to create, ~ to update, ! "
        "conflicts that cannot be changed in place, = unchanged, ? not checked here (the "
        "reason follows). Nothing is changed.",
    )
    _common(plan, subs=True, level="WARNING")
    plan.add_argument(
        "--check", action="store_true",
        help=f"exit {EXIT_DIFFERS} if anything differs (for CI)",
    )
    plan.add_argument(
        "--changes-only", action="store_true", help="do not list what is unchanged"
    )
    plan.set_defaults(func=cmd_plan)

    subs = commands.add_parser("subs", help="list the discovered subscriptions")
    _common(subs, subs=True)
    subs.set_defaults(func=cmd_subs)

    publish = commands.add_parser(
        "publish", help="publish one JSON message and print its id",
        description="Publish DATA (JSON) to TOPIC, wait for Pub/Sub to confirm it, print the "
        "message id. Uses PUBSUB_EMULATOR_HOST when it is set.",
    )
    publish.add_argument("topic", metavar="TOPIC", help="topic name (TOPIC_PREFIX is applied)")
    publish.add_argument("data", metavar="DATA", help="the message, as JSON: '{\"id\": 1}'")
    publish.add_argument(
        "--attr", metavar="KEY=VALUE", action="append", default=[], help="an attribute (repeat)"
    )
    publish.add_argument("--ordering-key", metavar="KEY", default="")
    publish.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the confirmation"
    )
    _common(publish, subs=False, level="WARNING")
    publish.set_defaults(func=cmd_publish)

    emulator = commands.add_parser(
        "emulator", help="run the Pub/Sub emulator in the foreground until Ctrl-C",
        description="Start Google's Pub/Sub emulator on a loopback port, print the export "
        "PUBSUB_EMULATOR_HOST=... line, and stop it on Ctrl-C/SIGTERM.",
    )
    emulator.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    emulator.add_argument(
        "--log-level", default="INFO", type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    emulator.set_defaults(func=cmd_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``relay-cli``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    try:
        code: int = args.func(args)
        return code
    except ConfigurationError as exc:
        _error(str(exc))
        return EXIT_CONFIG
    except RelayError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _error("interrupted")
        # Die of SIGINT, as shells expect, so a script running us stops too.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except Exception as exc:
        if args.log_level == "DEBUG":
            print(redact(traceback.format_exc()), end="", file=sys.stderr)
        _error(f"{type(exc).__name__}: {exc} (run with --log-level DEBUG for the traceback)")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
