"""``relay-cli``: run a worker, plan provisioning, list subscriptions, check the
settings, middleware and subscriptions, publish, run the emulator.

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

``check`` exits 0 when it found no problem and 1 when it found some (its report
lists them all); it never exits 2 for the problems it reports.

A second SIGINT/SIGTERM while ``run`` is draining abandons the drain: the
emulator (if any) is stopped and the process exits 1 at once.

``run --processes N`` (``auto``: one per CPU this process may use) runs a
supervisor that starts N ``run`` worker processes, restarts one that dies and
forwards the stop signal to all of them (``relay.processes``); it exits 0 when
every one drained, 1 otherwise, 2 if one failed with a configuration error. A SIGINT that was
ignored when the process started (a worker started with ``&`` by a shell
script) stays ignored: the terminal's Ctrl-C is the script's to handle.

Settings come from ``--settings MODULE`` (a module holding ``RELAY = {...}``),
else the module named by ``RELAY_SETTINGS``, else ``RELAY_*`` environment
variables. A framework that embeds these commands (``flask relay``,
``manage.py runrelay``) passes a ``Source`` instead: its settings and
subscriptions, with the same options otherwise. When an emulator is in use (``--emulator`` or
``PUBSUB_EMULATOR_HOST``) and no project id is configured, ``relay-local`` is
used.

This module imports nothing from google-cloud-pubsub: the transport is imported
when a command first needs it, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relay.check import cmd_check
from relay.commands import (
    EXIT_CONFIG,
    EXIT_DIFFERS,
    EXIT_FAILURE,
    EXIT_OK,
    PROG,
    READY,
    Source,
    _error,
    cmd_emulator,
    cmd_plan,
    cmd_publish,
    cmd_run,
    cmd_subs,
)
from relay.emulator import KINDS, EmulatorError, default_kind
from relay.errors import ConfigurationError, RelayError
from relay.redaction import redact
from relay.stop_signals import ForcedExit

__all__ = [
    "COMMANDS", "EXIT_CONFIG", "EXIT_DIFFERS", "EXIT_FAILURE", "EXIT_OK", "PROG", "READY",
    "Source", "add_arguments", "build_parser", "execute", "execute_options", "main",
]


# ---------------------------------------------------------------------- parser
def _common(
    parser: argparse.ArgumentParser, *, subs: bool, level: str = "INFO", embedded: bool = False
) -> None:
    if not embedded:  # an embedding framework supplies settings and subscriptions itself
        parser.add_argument(
            "--settings", metavar="MODULE",
            help="module holding RELAY = {...} (default: $RELAY_SETTINGS, else RELAY_* "
            "variables)",
        )
    if subs and not embedded:
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


def _emulator_kind(text: str) -> str:
    """An ``--emulator``/``--kind`` value: relay or google; none given: ``RELAY_EMULATOR``,
    else relay."""
    try:
        if not text:
            return default_kind()
        if text not in KINDS:
            raise EmulatorError(
                f"{text!r} is not an emulator relay knows: use relay (relay's own server) or "
                "google (Google's emulator, which needs Java and the Cloud SDK)"
            )
    except EmulatorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _processes(text: str) -> int:
    """A ``--processes`` value: a count of 1 or more, or ``auto``."""
    from relay.process_child import process_count

    try:
        return process_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_options(parser: argparse.ArgumentParser, embedded: bool) -> None:
    _common(parser, subs=True, embedded=embedded)
    parser.add_argument(
        "--emulator", nargs="?", const="", default=None, type=_emulator_kind, metavar="KIND",
        help="start a local Pub/Sub emulator for the life of the command: relay's own server "
        "(relay, the default; RELAY_EMULATOR changes it) or Google's (google; needs Java and "
        "the Cloud SDK)",
    )
    parser.add_argument(
        "--emulator-port", type=int, metavar="PORT",
        help="port for --emulator (default: a free one)",
    )
    parser.add_argument(
        "--health-port", type=int, metavar="PORT",
        help="serve the /livez and /readyz probes on this port, on HEALTH_HOST (0: a free "
        "one, printed at start; default: HEALTH_PORT, else no probe server)",
    )
    parser.add_argument(
        "--log-format", type=str.lower, choices=["text", "json"],
        help="text: one readable line per record; json: one JSON object per line "
        "(default: LOG_FORMAT, else text)",
    )
    parser.add_argument(
        "--provisioning", choices=["create", "verify", "off"],
        help="create: create and update topics and subscriptions to match the code; "
        "verify: read-only, fail if anything is missing or differs; off: no admin calls "
        "(default: PROVISIONING, else create)",
    )
    if embedded:  # a supervisor starts `relay-cli run` children; see docs/cli.md
        return
    parser.add_argument(
        "--processes", type=_processes, default=1, metavar="N",
        help="run N worker processes under one supervisor that provisions once, restarts a "
        "worker that dies and serves one health endpoint; auto: one per CPU this process "
        "may use (default: 1, no supervisor)",
    )
    # Given by the supervisor to each worker process it starts (relay.processes).
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)


def _plan_options(parser: argparse.ArgumentParser, embedded: bool) -> None:
    _common(parser, subs=True, level="WARNING", embedded=embedded)
    parser.add_argument(
        "--check", action="store_true",
        help=f"exit {EXIT_DIFFERS} if anything differs (for CI)",
    )
    parser.add_argument(
        "--changes-only", action="store_true", help="do not list what is unchanged"
    )
    parser.add_argument(
        "--apply", action="store_true",
        help="then make Pub/Sub match (as PROVISIONING='create' does at worker start) and "
        "exit: a one-shot provisioning step for deploys, e.g. of push subscriptions",
    )


def _subs_options(parser: argparse.ArgumentParser, embedded: bool) -> None:
    _common(parser, subs=True, embedded=embedded)


def _check_options(parser: argparse.ArgumentParser, embedded: bool) -> None:
    _common(parser, subs=True, level="WARNING", embedded=embedded)


def _publish_options(parser: argparse.ArgumentParser, embedded: bool) -> None:
    parser.add_argument("topic", metavar="TOPIC", help="topic name (TOPIC_PREFIX is applied)")
    parser.add_argument("data", metavar="DATA", help="the message, as JSON: '{\"id\": 1}'")
    parser.add_argument(
        "--attr", metavar="KEY=VALUE", action="append", default=[], help="an attribute (repeat)"
    )
    parser.add_argument("--ordering-key", metavar="KEY", default="")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the confirmation"
    )
    _common(parser, subs=False, level="WARNING", embedded=embedded)


def _emulator_options(parser: argparse.ArgumentParser, embedded: bool) -> None:
    parser.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    parser.add_argument(
        "--kind", default="", type=_emulator_kind, metavar="KIND",
        help="relay: relay's own server; google: Google's emulator (Java, the Cloud SDK); "
        "default: RELAY_EMULATOR, else relay",
    )
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )


@dataclass(frozen=True)
class _Command:
    func: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser, bool], None]
    help: str
    description: str | None = None


#: Every command, declared once: ``relay-cli``, ``flask relay`` and Django's
#: management commands all build their options from here.
COMMANDS: dict[str, _Command] = {
    "run": _Command(
        cmd_run, _run_options,
        "provision and consume every discovered subscription until SIGINT/SIGTERM",
        "Discover subscriptions, create or update them on Pub/Sub, and consume them until "
        "SIGINT/SIGTERM, then drain in-flight handlers and exit 0.",
    ),
    "plan": _Command(
        cmd_plan, _plan_options,
        "show how Pub/Sub differs from the declared subscriptions (read-only)",
        "Compare the discovered subscriptions (and their topics, dead-letter topics and "
        "bucket notifications) with what exists on Pub/Sub (and Cloud Storage), using "
        "read-only calls, and print the difference: + to create, ~ to update, ! conflicts "
        "that cannot be changed in place, = unchanged, ? not checked here (the reason "
        "follows). Nothing is changed, unless --apply is given: then the differences are "
        f"applied and the command exits {EXIT_OK}, or {EXIT_FAILURE} if a conflict is left.",
    ),
    "subs": _Command(cmd_subs, _subs_options, "list the discovered subscriptions"),
    "check": _Command(
        cmd_check, _check_options,
        "report every problem with the settings, middleware and subscriptions (read-only)",
        "Load the settings, check every MIDDLEWARE entry and its hooks, import every subs "
        "module and resolve its subscriptions, as run would, and list every problem found, "
        "with relay's replacement for each Relé name (settings keys, middleware paths, "
        "exceptions) left in the settings or subs modules. Nothing touches Pub/Sub. Exits "
        f"{EXIT_OK} when there is no problem, {EXIT_FAILURE} when there is one.",
    ),
    "publish": _Command(
        cmd_publish, _publish_options, "publish one JSON message and print its id",
        "Publish DATA (JSON) to TOPIC, wait for Pub/Sub to confirm it, print the message id. "
        "Uses PUBSUB_EMULATOR_HOST when it is set.",
    ),
    "emulator": _Command(
        cmd_emulator, _emulator_options, "run the Pub/Sub emulator in the foreground until Ctrl-C",
        "Start a Pub/Sub emulator (relay's own server, or Google's with --kind google) on a "
        "loopback port, print the export PUBSUB_EMULATOR_HOST=... line, and stop it on "
        "Ctrl-C/SIGTERM.",
    ),
}


def add_arguments(parser: argparse.ArgumentParser, command: str, source: Source | None) -> None:
    """Add ``command``'s options to ``parser`` (a Django command's, say), and its defaults."""
    spec = COMMANDS[command]
    spec.options(parser, source is not None)
    parser.set_defaults(func=spec.func, source=source)


def build_parser(prog: str = PROG, source: Source | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run relay workers, list subscriptions and publish to Google Cloud Pub/Sub.",
        epilog="Exit codes: 0 done, 1 runtime failure, 2 configuration or usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        add_arguments(
            commands.add_parser(name, help=spec.help, description=spec.description),
            name, source,
        )
    return parser


def execute(args: argparse.Namespace) -> int:
    """Run the parsed command; map errors to the exit codes above, one line on stderr."""
    try:
        code: int = args.func(args)
        return code
    except ConfigurationError as exc:
        _error(str(exc), args)
        return EXIT_CONFIG
    except (RelayError, ForcedExit) as exc:
        _error(str(exc), args)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _error("interrupted", args)
        # Die of SIGINT, as shells expect, so a script running us stops too.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except Exception as exc:
        if args.log_level == "DEBUG":
            print(redact(traceback.format_exc()), end="", file=sys.stderr)
        _error(
            f"{type(exc).__name__}: {exc} (run with --log-level DEBUG for the traceback)", args
        )
        return EXIT_FAILURE


def execute_options(command: str, options: Mapping[str, Any], source: Source) -> int:
    """Run ``command`` with options already parsed by a framework (``manage.py``)."""
    args = argparse.Namespace(**options)
    args.func, args.source = COMMANDS[command].func, source
    return execute(args)


def main(
    argv: Sequence[str] | None = None, *, prog: str = PROG, source: Source | None = None
) -> int:
    """Entry point of ``relay-cli`` (and of ``flask relay``); returns the exit code."""
    parser = build_parser(prog, source)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    return execute(args)


if __name__ == "__main__":
    sys.exit(main())
