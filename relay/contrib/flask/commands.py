"""``flask relay``: ``run``, ``subs``, ``plan`` and ``publish`` for the app's extension.

Each command is ``relay-cli``'s, with the same options and exit codes, minus
``--settings``, ``--subs`` and ``--root``: the settings are the app's
(``app.extensions["relay"].settings``) and the subscriptions the extension's.
click hands the arguments over untouched and relay's own parser reads them,
so ``flask relay run --help`` is relay's help and there is one definition of
every option (``relay.cli.COMMANDS``).
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from relay.cli import COMMANDS

#: The ``relay-cli`` commands ``flask relay`` offers (``emulator`` needs no app).
FLASK_COMMANDS = ("run", "subs", "plan", "publish")

relay_commands = AppGroup(
    "relay",
    help="Run relay workers, list and plan subscriptions, publish (relay-cli for this app).",
)


def _passthrough(name: str) -> click.Command:
    spec = COMMANDS[name]

    @relay_commands.command(
        name,
        help=f"{spec.description or spec.help} (Options: flask relay {name} --help.)",
        short_help=spec.help,
        add_help_option=False,  # --help goes to relay's parser
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx: click.Context, args: tuple[str, ...]) -> None:
        from relay.contrib.flask.extension import EXTENSION, FLASK_PROG, RelayState

        app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = app.extensions.get(EXTENSION)
        if not isinstance(state, RelayState):  # pragma: no cover - added by init_app only
            raise click.UsageError(f"Flask app {app.name!r} has no Relay extension")
        ctx.exit(state.extension.main([name, *args], app=app, prog=FLASK_PROG))

    return command


for _name in FLASK_COMMANDS:
    _passthrough(_name)

__all__ = ["FLASK_COMMANDS", "relay_commands"]
