"""Retry a failing handler in the process, with backoff, before the message is nacked.

Pub/Sub's own redelivery (the subscription's ``RetryPolicy``) is the durable
retry: it survives a crash, and with a dead-letter policy it ends on the
dead-letter topic. But each round trip costs at least the policy's minimum
backoff and a new delivery. A transient error (a timeout talking to a
database, a 503 from an API) is usually gone a second later; ``RetryMiddleware``
calls the handler again in place for those::

    RELAY = {
        "MIDDLEWARE": [
            "relay.contrib.logging_middleware.LoggingMiddleware",
            RetryMiddleware(max_retries=3, retry_on=(TimeoutError, ConnectionError)),
        ],
    }

Delays grow exponentially from ``min_backoff`` to ``max_backoff`` with jitter
(each delay is drawn between half and all of the exponential value, so workers
that failed together do not retry together). When the retries are used up,
or the error is not one to retry, the message is nacked as usual.

Keep the total retry time well under the subscription's lease
(``FLOW_MAX_LEASE_DURATION``): the message stays leased, and its thread busy,
while it waits. A worker that is stopping does not wait for retries: the
message is nacked at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from relay.errors import ConfigurationError, FilterError, UnrecoverableError
from relay.message import Action
from relay.middleware import BaseMiddleware

if TYPE_CHECKING:
    from relay.message import Message, Outcome
    from relay.subscription import Subscription

logger = logging.getLogger("relay.retry")

ExceptionTypes = type[BaseException] | Sequence[type[BaseException]]


def _as_types(value: ExceptionTypes, name: str) -> tuple[type[BaseException], ...]:
    items = (value,) if isinstance(value, type) else tuple(value)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(
                f"RetryMiddleware {name}: {item!r} is not an exception class; pass a class or "
                "a tuple of classes, e.g. (TimeoutError, ConnectionError)"
            )
    return items


class RetryMiddleware(BaseMiddleware):
    """See the module docstring.

    ``retry_on``: exception classes to retry (default: any ``Exception``).
    ``give_up_on``: exception classes never to retry, even if ``retry_on``
    matches (``UnrecoverableError`` is always among them, and so is
    ``FilterError``: a message whose filter failed is nacked at once, since
    the handler never ran).
    """

    def __init__(
        self,
        *,
        max_retries: int = 3,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        multiplier: float = 2.0,
        jitter: bool = True,
        retry_on: ExceptionTypes = Exception,
        give_up_on: ExceptionTypes = (),
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(
                f"RetryMiddleware max_retries={max_retries!r}: expected a whole number >= 0"
            )
        if not 0 <= min_backoff <= max_backoff:
            raise ConfigurationError(
                f"RetryMiddleware min_backoff={min_backoff!r}, max_backoff={max_backoff!r}: "
                "expected 0 <= min_backoff <= max_backoff (seconds)"
            )
        if multiplier < 1:
            raise ConfigurationError(
                f"RetryMiddleware multiplier={multiplier!r}: expected 1 or more"
            )
        self.max_retries = max_retries
        self.min_backoff = float(min_backoff)
        self.max_backoff = float(max_backoff)
        self.multiplier = float(multiplier)
        self.jitter = jitter
        self.retry_on = _as_types(retry_on, "retry_on")
        self.give_up_on = (*_as_types(give_up_on, "give_up_on"), UnrecoverableError,
                           FilterError)

    def delay(self, retries: int) -> float:
        """Seconds to wait before retry number ``retries + 1``."""
        delay = min(self.max_backoff, self.min_backoff * self.multiplier**retries)
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay

    def should_retry(self, error: BaseException) -> bool:
        return (
            isinstance(error, Exception)  # never SystemExit, KeyboardInterrupt, ...
            and isinstance(error, self.retry_on)
            and not isinstance(error, self.give_up_on)
        )

    def post_process_message_failure(
        self, subscription: Subscription, message: Message, outcome: Outcome
    ) -> None:
        error = outcome.exception
        if error is None or outcome.action is not Action.NACK or not self.should_retry(error):
            return
        if message.retries >= self.max_retries:
            if self.max_retries:
                logger.warning(
                    "message %s on %s still failing after %d in-process retries (%s: %s); "
                    "nacked for Pub/Sub to redeliver", message.id, subscription.name,
                    message.retries, type(error).__name__, error,
                )
            return
        outcome.retry_in = self.delay(message.retries)
        logger.info(
            "message %s on %s failed (%s: %s); retry %d of %d in %.2f s",
            message.id, subscription.name, type(error).__name__, error,
            message.retries + 1, self.max_retries, outcome.retry_in,
        )
