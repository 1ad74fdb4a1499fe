"""``relay-cli check``: every problem with the settings, middleware and
subscriptions, in one report, with relay's replacement for each Relé name.

It validates with the functions the other commands use (``load_settings`` or
the framework's ``Source``, ``relay.middleware.check_middleware``, discovery
and ``Subscription.resolve``), but collects what they raise instead of stopping
at the first problem, and carries on where it can: middleware are checked even
when a setting is wrong, and every ``subs`` module is imported even when one
fails. It also lists lines of the settings and ``subs`` modules that still name
Relé (``from rele...``, ``UnrecoverableException``). Nothing touches Pub/Sub.

Exit 0: no problem found; 1: at least one (the report is on stdout).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from relay.commands import (
    EXIT_FAILURE,
    EXIT_OK,
    Source,
    _configure_logging,
    _cwd_on_path,
    _prog,
    _with_project,
    load_settings,
)
from relay.console import say
from relay.discovery import find_subs_modules, import_module, import_tree, subscriptions_in, unique
from relay.errors import ConfigurationError
from relay.middleware import check_middleware
from relay.migration import RELE_MIDDLEWARE, rele_names_in
from relay.settings import Settings
from relay.subscription import Subscription

__all__ = ["Report", "cmd_check", "problems_of", "settings_and_middleware"]


@dataclass
class Report:
    """Problems by section (``settings``, ``middleware``, ``subscriptions``,
    ``Relé names``), and what was checked."""

    sections: dict[str, list[str]] = field(
        default_factory=lambda: {
            "settings": [], "middleware": [], "subscriptions": [], "Relé names": []
        }
    )
    checked: dict[str, str] = field(default_factory=dict)

    def add(self, section: str, problems: Iterable[str]) -> None:
        self.sections[section].extend(_hinted(p) for p in problems)

    @property
    def count(self) -> int:
        return sum(len(problems) for problems in self.sections.values())

    def render(self, prog: str) -> str:
        lines = []
        for section, problems in self.sections.items():
            if not problems:
                lines.append(f"{section}: ok{self.checked.get(section, '')}")
                continue
            lines.append(f"{section}: {_count(len(problems))}")
            lines.extend(f"  - {problem}" for problem in problems)
        if self.count:
            lines.append(f"{prog} check: {_count(self.count)} found")
        else:
            lines.append(f"{prog} check: no problems found")
        return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n} problem{'s' if n != 1 else ''}"


def problems_of(exc: ConfigurationError) -> list[str]:
    """The problems one ``ConfigurationError`` reports: its ``problems`` if it has
    them (``Settings.load`` reports every bad key at once), else one per line."""
    problems = getattr(exc, "problems", None)
    if problems:
        return [str(p) for p in problems]
    return [line.strip() for line in str(exc).splitlines() if line.strip()] or [str(exc)]


def _hinted(problem: str) -> str:
    """``problem``, with relay's replacement for each Relé name it quotes (unless it
    names the replacement already)."""
    hints = [
        f"Relé's {name}: use {replacement}"
        for name, replacement in rele_names_in(problem)
        if replacement.split(" ")[0] not in problem
    ]
    return f"{problem} ({'; '.join(hints)})" if hints else problem


# -------------------------------------------------------------------- settings
def _settings(args: argparse.Namespace, report: Report) -> tuple[Settings | None, Any, list[Path]]:
    """The settings (None if they do not load), the raw ``MIDDLEWARE`` value when
    only that could be read, and the settings module's file."""
    source: Source | None = getattr(args, "source", None)
    if source is not None:
        try:
            return source.settings(), None, []
        except ConfigurationError as exc:
            report.add("settings", problems_of(exc))
            return None, None, []
    _cwd_on_path()
    name = args.settings or os.environ.get("RELAY_SETTINGS")
    module: ModuleType | None = None
    if name:
        try:
            module = import_module(name, what="settings module")
        except ConfigurationError as exc:
            report.add("settings", problems_of(exc))
            return None, None, []
    files = [Path(module.__file__)] if module is not None and module.__file__ else []
    try:
        return load_settings(name), None, files
    except ConfigurationError as exc:
        error = exc
    mapping = getattr(module, "RELAY", None) if module is not None else None
    rele = getattr(module, "RELE", None) if module is not None else None
    if module is not None and mapping is None and isinstance(rele, Mapping):
        report.add("settings", [
            f"settings module {name!r} defines RELE, Relé's name for the settings: "
            "rename it RELAY"
        ])
        mapping = rele
        try:
            return Settings.from_object(module, name="RELE"), None, files
        except ConfigurationError as exc:
            error = exc
    report.add("settings", problems_of(error))
    raw = mapping.get("MIDDLEWARE") if isinstance(mapping, Mapping) else None
    return None, raw, files


# ---------------------------------------------------------------- subscriptions
def _subscriptions(
    args: argparse.Namespace, settings: Settings | None, report: Report
) -> tuple[list[Subscription], list[Path]]:
    source: Source | None = getattr(args, "source", None)
    if source is not None:
        if settings is None:
            return [], []
        try:
            return source.subscriptions(settings), []
        except ConfigurationError as exc:
            report.add("subscriptions", problems_of(exc))
            return [], []
    root = Path(args.root).resolve()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    targets: list[tuple[str, Path | None]] = (
        [(name, None) for name in args.subs] if args.subs else list(find_subs_modules(root))
    )
    what = "--subs module" if args.subs else "subs module"
    declared: list[Subscription] = []
    files: list[Path] = []
    for name, path in targets:
        if path is not None:
            files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
        try:
            modules = import_tree(name, path, what)
        except ConfigurationError as exc:
            report.add("subscriptions", problems_of(exc))
            continue
        for module in modules:
            if path is None and getattr(module, "__file__", None):
                files.append(Path(str(module.__file__)))
            try:
                declared.extend(subscriptions_in(module))
            except ConfigurationError as exc:
                report.add("subscriptions", problems_of(exc))
    if not targets:
        report.add("subscriptions", [
            f"no subscriptions found under {root}: declare @sub handlers in a subs.py module "
            "(or a subs/ package), or name modules with --subs"
        ])
    try:
        found = unique(declared, settings)
    except ConfigurationError as exc:
        report.add("subscriptions", problems_of(exc))
        found = list({id(s): s for s in declared}.values())  # duplicates reported above
    return found, files


def _resolved(subscriptions: list[Subscription], settings: Settings, report: Report) -> None:
    for subscription in subscriptions:
        try:
            subscription.resolve(settings)
        except ConfigurationError as exc:
            report.add("subscriptions", problems_of(exc))


# ------------------------------------------------------------------ Relé names
def _rele_lines(files: Iterable[Path]) -> list[str]:
    """``file:line: <Relé name> ...`` for each line of code that still names Relé."""
    found = []
    for path in dict.fromkeys(p.resolve() for p in files):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        try:
            shown = path.relative_to(Path.cwd())
        except ValueError:
            shown = path
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            names = [  # a MIDDLEWARE entry is named by the middleware section
                f"{name}: use {replacement}"
                for name, replacement in rele_names_in(code) if name not in RELE_MIDDLEWARE
            ]
            if names:
                found.append(f"{shown}:{number}: Relé's {'; '.join(names)}")
    return found


# ------------------------------------------------------ settings and middleware
def settings_and_middleware(
    args: argparse.Namespace, report: Report
) -> tuple[Settings | None, list[Path]]:
    """Load the settings and check ``MIDDLEWARE``, adding every problem to ``report``:
    the settings (None if they do not load) and the settings module's file.

    ``MIDDLEWARE`` is checked even when the settings do not load (the raw entries of
    the settings dict). ``check`` reports with this; ``run`` and ``subs`` fail with
    one error naming everything it found (``relay.commands.checked_settings``).
    """
    settings, raw_middleware, files = _settings(args, report)
    middleware: Any
    if settings is not None:
        middleware = settings.middleware
    elif isinstance(raw_middleware, str):
        middleware = [raw_middleware]
    elif isinstance(raw_middleware, (list, tuple)):
        middleware = raw_middleware
    else:  # absent, or not a list: the settings problems say so
        middleware = None
    if middleware is None:
        report.checked["middleware"] = " (not checked: the settings did not load)"
    else:
        report.add("middleware", check_middleware(middleware))
        report.checked["middleware"] = f" ({len(middleware)} entries)"
    return settings, files


# --------------------------------------------------------------------- command
def check(args: argparse.Namespace) -> Report:
    """Every problem ``relay-cli check`` finds, by section."""
    report = Report()
    settings, files = settings_and_middleware(args, report)
    if settings is not None:
        try:
            _with_project(settings)
        except ConfigurationError as exc:
            report.add("settings", problems_of(exc))
    subscriptions, sub_files = _subscriptions(args, settings, report)
    if settings is not None:
        _resolved(subscriptions, settings, report)
    report.checked["subscriptions"] = f" ({len(subscriptions)} found)"
    report.add("Relé names", _rele_lines([*files, *sub_files]))
    return report


def cmd_check(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    report = check(args)
    say(report.render(_prog(args)))
    return EXIT_FAILURE if report.count else EXIT_OK
