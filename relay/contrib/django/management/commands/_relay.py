"""What ``runrelay``, ``showsubscriptions`` and ``relayplan`` share: each is a
``relay-cli`` command with the project's settings and subscriptions.

The options and their behaviour are ``relay-cli``'s (``relay.cli.COMMANDS``),
minus ``--settings``, ``--subs`` and ``--root``: settings come from
``settings.RELAY`` and subscriptions from the installed apps. Exit codes are
``relay-cli``'s: a nonzero one is raised as ``CommandError(returncode=code)``,
which ``manage.py`` turns into that exit status after relay's one-line error.
What relay prints goes to the command's ``stdout``/``stderr`` (so
``call_command(..., stdout=buffer)`` captures it).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from relay import cli
from relay.contrib.django.conf import relay_settings
from relay.contrib.django.discovery import WHERE, discover

_MEANING = {
    cli.EXIT_FAILURE: "a runtime failure",
    cli.EXIT_CONFIG: "a configuration or usage error",
    cli.EXIT_DIFFERS: "Pub/Sub differs from the code",
}


def _plain(text: str) -> str:
    return text


class _Stream:
    """A text stream writing through a Django ``OutputWrapper`` as it is given:
    ``print`` already ends its lines, and relay's logs on stderr are not to be
    styled as errors (Django colours a command's stderr red)."""

    def __init__(self, wrapper: Any) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> int:
        self._wrapper.write(text, style_func=_plain, ending="")
        return len(text)

    def flush(self) -> None:
        self._wrapper.flush()

    def isatty(self) -> bool:
        return bool(self._wrapper.isatty())


class RelayCommand(BaseCommand):  # type: ignore[misc]  # Django ships no type information
    #: The ``relay-cli`` command this one is (a key of ``relay.cli.COMMANDS``).
    relay_command = ""

    @property
    def prog(self) -> str:
        return f"manage.py {type(self).__module__.rpartition('.')[2]}"

    def source(self) -> cli.Source:
        return cli.Source(
            prog=self.prog, settings=relay_settings, subscriptions=discover, where=WHERE
        )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        cli.add_arguments(parser, self.relay_command, self.source())

    def handle(self, *args: Any, **options: Any) -> None:
        with (
            contextlib.redirect_stdout(_Stream(self.stdout)),
            contextlib.redirect_stderr(_Stream(self.stderr)),
        ):
            code = cli.execute_options(self.relay_command, options, self.source())
        if code != cli.EXIT_OK:
            meaning = _MEANING.get(code, "failed")
            raise CommandError(f"{self.prog}: exit code {code}, {meaning}", returncode=code)
