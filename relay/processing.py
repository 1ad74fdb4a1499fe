"""The life of one received message: hooks, decode, filter, handler, settle.

The ack policy, exactly:

=================================  =======  ====================================
what happened                      settle   hooks after ``pre_process_message``
=================================  =======  ====================================
handler returned                   ack      ``post_process_message_success``
a ``filter_by`` rejected it        ack      (status ``skipped``)
handler raised                     nack     ``post_process_message_failure``
a filter raised                    nack     ``post_process_message_failure``
payload is not JSON / not UTF-8    ack      ``post_process_message_failure``
                                            and an ERROR log with the message id
                                            and the first bytes of the payload
=================================  =======  ====================================

``post_process_message`` runs last in every case. A middleware may turn a nack
into an ack (or back) by setting ``outcome.action`` in a post hook; that is how
``UnrecoverableMiddleware`` works. Hooks that raise are contained and change
nothing. Nacked messages are redelivered by Pub/Sub after the subscription's
retry-policy backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from relay.codec import Codec
from relay.errors import DecodeError
from relay.message import Action, Message, Outcome, Status
from relay.middleware import MiddlewareChain
from relay.subscription import Subscription
from relay.transports.base import ReceivedMessage

logger = logging.getLogger("relay.processing")
_clock = time.perf_counter


class Processor:
    """Runs the pipeline for one message; shared by the Worker and relay.testing."""

    __slots__ = ("_chain", "_decode", "_global_filters")

    def __init__(
        self,
        chain: MiddlewareChain,
        codec: Codec | None = None,
        global_filters: tuple[Callable[..., bool], ...] = (),
    ) -> None:
        self._chain = chain
        self._decode = (codec or Codec()).decode
        self._global_filters = global_filters

    # The sync and async paths share _begin and _finish; only the call differs.
    def _begin(
        self, sub: Subscription, message: Message, attributes: dict[str, str], started: float
    ) -> Outcome | None:
        """Decode and filter. Returns an outcome if the handler must not run."""
        try:
            message.data = self._decode(message.raw)
        except DecodeError as exc:
            logger.error(
                "message %s on subscription %s has an undecodable payload, acked and dropped "
                "(%s); payload: %s",
                message.id, sub.name, exc, message.preview(),
            )
            return Outcome(Status.FAILURE, Action.ACK, _clock() - started, exception=exc)
        if self._global_filters or sub.filters:
            try:
                passed = all(f(**attributes) for f in self._global_filters) and sub.accepts(
                    attributes
                )
            except Exception as exc:
                return Outcome(Status.FAILURE, Action.NACK, _clock() - started, exception=exc)
            if not passed:
                return Outcome(Status.SKIPPED, Action.ACK, _clock() - started)
        if sub.data_param in attributes:
            return Outcome(
                Status.FAILURE, Action.NACK, _clock() - started,
                exception=TypeError(
                    f"message attribute {sub.data_param!r} has the name of the data parameter "
                    f"of {sub.handler_name}, so it cannot be passed as a keyword: make the "
                    f"parameter positional-only, def handler({sub.data_param}, /, **attrs)"
                ),
            )
        return None

    def _finish(
        self, sub: Subscription, message: Message, received: ReceivedMessage, outcome: Outcome
    ) -> Outcome:
        run = self._chain.run
        if outcome.status is Status.SUCCESS:
            run("post_process_message_success", sub, message, outcome)
        elif outcome.status is Status.FAILURE:
            run("post_process_message_failure", sub, message, outcome)
        run("post_process_message", sub, message, outcome)
        try:
            if outcome.action is Action.ACK:
                received.ack()
            else:
                received.nack()
        except Exception:
            logger.exception(
                "could not %s message %s on %s", outcome.action.value, message.id, sub.name
            )
        return outcome

    def process(self, sub: Subscription, received: ReceivedMessage) -> Outcome:
        """Process with a sync handler on the calling thread, then settle."""
        started = _clock()
        message = Message(received)
        self._chain.run("pre_process_message", sub, message)
        attributes = dict(received.attributes)
        outcome = self._begin(sub, message, attributes, started)
        if outcome is None:
            try:
                result = sub._func(message.data, **attributes)
                if result is not None and asyncio.iscoroutine(result):  # async on the sync path
                    result = asyncio.run(result)
            except BaseException as exc:  # even SystemExit: one message never kills a worker
                outcome = Outcome(Status.FAILURE, Action.NACK, _clock() - started, exception=exc)
            else:
                outcome = Outcome(Status.SUCCESS, Action.ACK, _clock() - started, result=result)
        return self._finish(sub, message, received, outcome)

    async def process_async(self, sub: Subscription, received: ReceivedMessage) -> Outcome:
        """Process with an ``async def`` handler on the worker's loop, then settle."""
        started = _clock()
        message = Message(received)
        self._chain.run("pre_process_message", sub, message)
        attributes = dict(received.attributes)
        outcome = self._begin(sub, message, attributes, started)
        if outcome is None:
            try:
                result: Any = await sub._func(message.data, **attributes)
            except asyncio.CancelledError:
                received.nack()
                raise
            except BaseException as exc:
                outcome = Outcome(Status.FAILURE, Action.NACK, _clock() - started, exception=exc)
            else:
                outcome = Outcome(Status.SUCCESS, Action.ACK, _clock() - started, result=result)
        return self._finish(sub, message, received, outcome)
