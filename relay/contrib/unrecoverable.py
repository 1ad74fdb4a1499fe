"""Ack, instead of redelivering, messages whose handler says retrying is pointless.

Raise ``UnrecoverableError`` from a handler (a record that no longer exists, a
request that can never be valid) and, with ``UnrecoverableMiddleware`` in the
chain, the message is acked and logged as dropped instead of being nacked and
redelivered forever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relay.errors import RelayError
from relay.message import Action
from relay.middleware import BaseMiddleware

if TYPE_CHECKING:
    from relay.message import Message, Outcome
    from relay.subscription import Subscription

logger = logging.getLogger("relay.unrecoverable")


class UnrecoverableError(RelayError):
    """Raise from a handler: the message can never succeed; do not redeliver it."""


class UnrecoverableMiddleware(BaseMiddleware):
    def post_process_message_failure(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        if isinstance(outcome.exception, UnrecoverableError):
            outcome.action = Action.ACK
            logger.warning(
                "message %s on %s is unrecoverable (%s); acked, not redelivered",
                message.id, subscription.name, outcome.exception,
            )
