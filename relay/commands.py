"""The bodies of the commands ``relay-cli`` (``relay.cli``) parses: run, plan,
subs, publish, emulator, and what they share (settings, signals, the emulator).

Each takes the parsed ``argparse.Namespace`` and returns an exit code; errors
are raised and ``relay.cli.execute`` maps them to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay.console import say
from relay.discovery import discover, import_module
from relay.errors import ConfigurationError, RelayError
from relay.redaction import redact, shown
from relay.setting_values import PUBSUB_TRANSPORTS
from relay.settings import Settings
from relay.stop_signals import ForcedExit, StopSignals
from relay.subscription import Subscription

if TYPE_CHECKING:
    from relay.emulator import Emulator
    from relay.health import HealthServer
    from relay.provisioning import Desired
    from relay.transports.base import Transport
    from relay.worker import Worker

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
#: ``plan --check``: Pub/Sub does not match the code.
EXIT_DIFFERS = 3
#: Project id used against an emulator when none is configured.
EMULATOR_PROJECT = "relay-local"
#: The line ``run`` prints once the worker is consuming (scripts wait for it).
READY = "relay-cli: worker running; press Ctrl-C (or send SIGTERM) to stop"
PROG = "relay-cli"

logger = logging.getLogger("relay.cli")  # the commands log as the CLI


@dataclass(frozen=True)
class Source:
    """Where an embedding framework's commands get settings and subscriptions.

    ``relay-cli`` reads ``--settings`` and discovers ``subs`` modules; ``flask
    relay`` and ``manage.py runrelay`` pass one of these instead, and those two
    options are not offered. ``where`` says where subscriptions are declared,
    for the "none found" error.
    """

    prog: str
    settings: Callable[[], Settings]
    subscriptions: Callable[[Settings], list[Subscription]]
    where: str


# --------------------------------------------------------------------- helpers
def _prog(args: argparse.Namespace | None) -> str:
    source = getattr(args, "source", None)
    return source.prog if source is not None else PROG


def _error(message: str, args: argparse.Namespace | None = None) -> None:
    """The one error line on stderr; never a private key, whatever the message quotes.

    A worker process of ``run --processes N`` says which one it is.
    """
    prog = _prog(args)
    index = getattr(args, "worker_index", None)
    if index is not None:
        prog = f"{prog} [worker {index} pid {os.getpid()}]"
    say(f"{prog}: error: {redact(message)}", stream=sys.stderr)


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


def _settings(args: argparse.Namespace) -> Settings:
    source: Source | None = getattr(args, "source", None)
    return source.settings() if source is not None else load_settings(args.settings)


def checked_settings(args: argparse.Namespace) -> Settings:
    """The settings, with ``MIDDLEWARE`` validated as ``run`` builds it: ``run`` and
    ``subs`` start with this.

    One ``ConfigurationError`` names every problem with both (``MIDDLEWARE`` is
    checked even when a setting is wrong), found as ``check`` finds them
    (``relay.check.settings_and_middleware``).
    """
    from relay.check import Report, settings_and_middleware

    report = Report()
    settings, _ = settings_and_middleware(args, report)
    problems = report.sections["settings"] + report.sections["middleware"]
    if len(problems) == 1:
        raise ConfigurationError(problems[0])
    if problems:
        lines = "".join(f"\n  {problem}" for problem in problems)
        hint = (  # Django's and Flask's commands have no `check`
            f"\n(run `{PROG} check` for the full report, subscriptions included)"
            if getattr(args, "source", None) is None else ""
        )
        raise ConfigurationError(
            f"{len(problems)} problems in the settings and MIDDLEWARE:{lines}{hint}"
        )
    assert settings is not None  # the settings section reports why they did not load
    return settings


def _declared(args: argparse.Namespace, settings: Settings) -> tuple[list[Subscription], str]:
    """The command's subscriptions, and where they were looked for (for errors)."""
    source: Source | None = getattr(args, "source", None)
    if source is not None:
        return source.subscriptions(settings), source.where
    found = discover(args.root, args.subs, settings=settings)
    return found, f"under {os.path.abspath(args.root)}"


def _with_project(settings: Settings) -> Settings:
    """Fail early without a project id (Pub/Sub transport), or default it on an emulator."""
    if settings.transport not in PUBSUB_TRANSPORTS:
        return settings
    try:
        settings.project_id()
    except ConfigurationError:
        if not settings.emulator_host:
            raise
        logger.info("no GC_PROJECT_ID configured; using %r on the emulator", EMULATOR_PROJECT)
        return settings.replace(gc_project_id=EMULATOR_PROJECT)
    return settings


@contextlib.contextmanager
def _emulator(port: int | None, kind: str) -> Iterator[Emulator]:
    """Run the emulator for the block, with PUBSUB_EMULATOR_HOST pointing at it.

    ``Emulator.start()`` stops the process itself if it is interrupted half-way,
    so no Java is left behind whatever happens.
    """
    from relay.emulator import running_emulator

    with running_emulator(port, kind) as emulator:
        logger.info("started the Pub/Sub emulator: %s (pid %s)", emulator.label, emulator.pid)
        try:
            yield emulator
        finally:
            logger.info("stopping the Pub/Sub emulator: %s (pid %s)", emulator.label, emulator.pid)


# -------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    settings = checked_settings(args)
    if args.provisioning:
        settings = settings.replace(provisioning=args.provisioning)
    subscriptions, where = _declared(args, settings)
    if not subscriptions:
        how = (
            "declare @sub handlers in a subs.py module (or a subs/ package), or name modules "
            "with --subs" if getattr(args, "source", None) is None else "declare @sub handlers"
        )
        raise ConfigurationError(f"no subscriptions found {where}: {how}")
    _configure_logging(args.log_level, args.log_format or settings.log_format)
    # --processes N: this process supervises N workers (relay.processes); a worker
    # it started has --worker-index and --supervisor-pid (not offered in --help).
    index: int | None = getattr(args, "worker_index", None)
    processes: int = getattr(args, "processes", None) or 1
    if index is not None:
        from relay.process_child import tag_child_logs

        tag_child_logs(index)
    if args.emulator and settings.transport == "memory":
        logger.warning("--emulator with TRANSPORT 'memory': the worker will not use it")
    with StopSignals(escalate=index is None) as stop, contextlib.ExitStack() as stack:
        try:
            if args.emulator:
                emulator = stack.enter_context(_emulator(args.emulator_port, args.emulator))
                say(
                    f"{_prog(args)}: Pub/Sub emulator running at {emulator.address} "
                    f"(pid {emulator.pid}); to use it from another shell: "
                    f"export PUBSUB_EMULATOR_HOST={emulator.address}"
                )
            if stop.requested.is_set():  # stopped while the emulator was starting
                return EXIT_OK
            if processes > 1 and index is None:
                from relay.processes import supervise

                return supervise(
                    args, _with_project(settings), subscriptions, stop, count=processes,
                    prog=_prog(args),
                )
            return _run_worker(
                _with_project(settings), subscriptions, stop, health_port=args.health_port,
                prog=_prog(args), parent=getattr(args, "supervisor_pid", None),
            )
        except ForcedExit as exc:
            logger.error("%s", exc)
            stack.close()  # stop the emulator before leaving
            logging.shutdown()
            sys.stdout.flush()
            # Handler threads may still be running and would hold up interpreter exit.
            os._exit(EXIT_FAILURE)


def _run_worker(
    settings: Settings, subscriptions: list[Subscription], stop: StopSignals,
    *, health_port: int | None = None, prog: str = PROG, parent: int | None = None,
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
            say(f"{prog}: health probes at {health.url}/livez and {health.url}/readyz")
        if not stop.requested.is_set():
            worker.setup()
        if not stop.requested.is_set():  # a signal during provisioning: do not start
            worker.start()
            say(READY.replace(PROG, prog, 1))
            stop.wait(parent)
    except ForcedExit:
        raise  # a second signal before the drain began: abandon it, do not start one
    except BaseException:
        _stop_worker(worker, health)
        raise
    _stop_worker(worker, health)
    return EXIT_OK


def _stop_worker(worker: Worker, health: HealthServer | None) -> None:
    """Drain and stop ``worker``, then its health server and the process-wide app."""
    import relay

    try:
        worker.stop()
    finally:
        if health is not None:
            health.stop()
        relay.reset()


def cmd_plan(args: argparse.Namespace) -> int:
    """Print what provisioning would change, without changing anything."""
    from relay import provisioning
    from relay.app import build_transport
    from relay.subscription import check_unique

    settings = _settings(args)
    declared, where = _declared(args, settings)
    if not declared:
        raise ConfigurationError(f"no subscriptions found {where}: nothing to plan")
    settings = _with_project(settings)
    _configure_logging(args.log_level)
    resolved = check_unique(s.resolve(settings) for s in declared)
    wanted = provisioning.desired(resolved, settings)
    transport = build_transport(settings)
    try:
        plan = provisioning.plan(transport, wanted)
        say(plan.render(show_unchanged=not args.changes_only))
        if getattr(args, "apply", False) and not plan.in_sync:
            return _apply(transport, wanted, args)
    finally:
        transport.close()
    if args.check and not plan.in_sync:
        _error(f"Pub/Sub differs from the code ({len(plan.problems())} difference(s))", args)
        return EXIT_DIFFERS
    return EXIT_OK


def _apply(transport: Transport, wanted: Desired, args: argparse.Namespace) -> int:
    """``plan --apply``: provision as ``PROVISIONING='create'`` does, then say what is left."""
    from relay import provisioning

    results = provisioning.provision(transport, wanted, "create")
    conflicts = [c for r in results for c in r.conflicts]
    done = [r for r in results if r.action.value != "unchanged"]
    say("Applied the plan (topics first, then subscriptions):"
        + "".join(f"\n  {r.action.value} {r.name}" for r in done))
    if conflicts:
        _error("left as they are (cannot be changed in place): " + "; ".join(conflicts), args)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_subs(args: argparse.Namespace) -> int:
    settings = checked_settings(args)  # as `run` does, so `subs` accepts what `run` runs
    subscriptions, where = _declared(args, settings)
    if not subscriptions:
        say(f"no subscriptions found {where}", stream=sys.stderr)
        return EXIT_OK
    rows = [("NAME", "TOPIC", "FILTERS", "HANDLER", "MODE")]
    for declared in subscriptions:
        s = declared.resolve(settings)
        filters = [f"global: {getattr(f, '__name__', repr(f))}" for f in settings.filter_subs_by]
        filters += [getattr(f, "__name__", repr(f)) for f in s.filters]
        if s.backend_filter_by:
            filters.append(f"backend: {s.backend_filter_by}")
        mode = "async" if s.is_async else "sync"
        rows.append((s.name, s.full_topic, ", ".join(filters) or "-", s.handler_name, mode))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        say("  ".join([*cells, row[-1]]))
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
    settings = _with_project(_settings(args))
    _configure_logging(args.log_level)
    from relay.app import App

    app = App(settings)
    # A failure is the one error line relay-cli prints: not also LoggingMiddleware's record.
    events, quiet = logging.getLogger("relay.events"), _NotPublishFailures()
    if args.log_level != "DEBUG":
        events.addFilter(quiet)
    try:
        future = app.publisher.publish(
            args.topic, data, ordering_key=args.ordering_key, attrs=attrs,
            blocking=True, timeout=args.timeout,
        )
        say(future.result())
    finally:
        events.removeFilter(quiet)
        app.close()
    return EXIT_OK


class _NotPublishFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "operation", None) != "publish" or record.levelno < logging.ERROR


def cmd_emulator(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    with StopSignals() as stop, _emulator(args.port, args.kind) as emulator:
        say(f"export PUBSUB_EMULATOR_HOST={emulator.address}")
        logger.info("%s running (pid %s); Ctrl-C to stop", emulator.label, emulator.pid)
        process = emulator.process
        while not stop.requested.wait(0.5):
            if process is not None and process.poll() is not None:
                raise RelayError(
                    f"{emulator.label} exited with code {process.returncode}; its log: "
                    f"{emulator.log_tail()}"
                )
    return EXIT_OK
