"""``AppContextMiddleware``: every message is handled inside its own Flask app context.

``Relay.init_app`` puts one first in the app's middleware chain, so its
``pre_process_message`` runs before every other middleware's and its
``post_process_message`` after every other post hook: the whole life of a
message, other middleware included, sees ``current_app`` and a ``g`` of its own.

The context is kept on the message (``message.state``), never on the
middleware: one instance serves every handler thread and the event loop at
once. Flask keeps the current context in context variables, which are per
thread and per asyncio task; the worker runs a message's hooks and its handler
on one handler thread (``def`` handlers) or in one task on its event loop
(``async def`` handlers), so the context pushed for a message is the one its
handler sees and the one popped at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask
from flask.ctx import AppContext

from relay.middleware import BaseMiddleware

if TYPE_CHECKING:
    from relay.message import Message, Outcome
    from relay.subscription import Subscription

#: Where the app context of a message is kept in ``message.state``.
STATE_KEY = "relay.contrib.flask.app_context"


class AppContextMiddleware(BaseMiddleware):
    """Push ``app.app_context()`` when a message arrives; pop it when it is done.

    The pop passes the handler's exception (if it raised) to the app's
    ``teardown_appcontext`` functions, as Flask does at the end of a request,
    and runs them whatever the outcome.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app

    def pre_process_message(self, subscription: Subscription, message: Message) -> None:
        context = self.app.app_context()
        context.push()
        message.state[STATE_KEY] = context

    def post_process_message(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        context: AppContext | None = message.state.pop(STATE_KEY, None)
        if context is None:  # pre_process_message failed to push one
            return
        error = outcome.exception
        context.pop(error if isinstance(error, Exception) else None)

    def __repr__(self) -> str:
        return f"<AppContextMiddleware app={self.app.name!r}>"


__all__ = ["STATE_KEY", "AppContextMiddleware"]
