"""The life of one received message: hooks, decode, filter, handler, settle.

The ack policy, exactly:

=================================  ===========  ================================
what happened                      settle       hooks after ``pre_process_message``
=================================  ===========  ================================
handler returned                   ack          ``post_process_message_success``
a filter returned False            ack          (status ``skipped``)
handler raised (any                nack         ``post_process_message_failure``
``BaseException``)
handler raised ``SkipMessage``     ack          (status ``skipped``; the reason is
                                                ``outcome.exception``)
handler raised                     dead letter  ``post_process_message_failure``
``UnrecoverableError``, the
subscription has a dead-letter
topic
handler raised                     ack          the same
``UnrecoverableError``, no
dead-letter topic
a filter raised (any               nack         ``post_process_message_failure``;
``BaseException``) or returned                  ``outcome.exception`` is a
something other than a bool                     ``FilterError`` naming the filter
payload is not JSON / not UTF-8,   dead letter  ``post_process_message_failure``
subscription has a dead-letter                  and an ERROR log with the message
topic                                           id and the first bytes
payload is not JSON / not UTF-8,   ack          the same
no dead-letter topic
=================================  ===========  ================================

"dead letter" publishes the raw message, attributes and all, to the
subscription's dead-letter topic (adding ``relay_dead_letter_reason`` and
``relay_dead_letter_subscription``) and acks it once that publish is confirmed;
if the publish fails the message is nacked, so it is never lost.

A filter must return a bool (``relay.filters``): ``None``, a string or a
coroutine is that message's failure, never a silent skip or pass. Even a filter
raising ``KeyboardInterrupt`` or ``SystemExit`` only fails its message: nothing
a filter or handler does escapes into the worker's threads or event loop.

A ``post_process_message_failure`` hook may set ``outcome.retry_in``: the
handler is then called again after that many seconds, where it ran before,
with ``message.retries`` increased (``RetryMiddleware``); once the worker is
stopping no retry is made, and a stop ends a backoff at once.
``post_process_message`` runs once, last, in every case. A middleware may turn
a nack into an ack (or back) by setting ``outcome.action``. Hooks that raise
are contained and change nothing.

One path for every handler: ``Processor.run``, a coroutine. Where the handler
runs is its only branch (``on_loop``): awaited on the running loop, or called
on this thread, where the coroutine never suspends (``relay.pipeline.drive``).

Settling: with ``enable_exactly_once_delivery`` the ack is sent with
``ack_with_response()`` and an ack Pub/Sub did not apply is logged and reported
to ``post_ack_failure`` hooks (as is any ack that raises).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from relay.codec import Codec
from relay.errors import AckError, DecodeError, SkipMessage, UnrecoverableError
from relay.filters import run_filters
from relay.limits import MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES
from relay.message import Action, Message, Outcome, Status
from relay.middleware import MiddlewareChain
from relay.pipeline import StopSignal, drive
from relay.subscription import Subscription
from relay.transports.base import ReceivedMessage

logger = logging.getLogger("relay.processing")
_clock = time.perf_counter

#: ``(topic, data, attributes) -> future``: how dead letters are sent.
DeadLetterSender = Callable[[str, bytes, Mapping[str, str]], "Future[str]"]


class Processor:
    """Runs the pipeline for one message; shared by the Worker and relay.testing."""

    __slots__ = ("_chain", "_decode", "_global_filters", "_send_dead_letter", "_stopping")

    def __init__(
        self,
        chain: MiddlewareChain,
        codec: Codec | None = None,
        global_filters: tuple[Callable[..., bool], ...] = (),
        *,
        dead_letters: DeadLetterSender | None = None,
        stopping: StopSignal | None = None,
    ) -> None:
        self._chain = chain
        self._decode = (codec or Codec()).decode
        self._global_filters = global_filters
        self._send_dead_letter = dead_letters
        # Set when the worker stops: no more in-process retries, settle now.
        self._stopping = stopping or StopSignal()

    def process(self, sub: Subscription, received: ReceivedMessage) -> Outcome:
        """Process with the handler called on this thread, then settle."""
        return drive(self.run(sub, received, False))

    async def process_async(self, sub: Subscription, received: ReceivedMessage) -> Outcome:
        """Process with an ``async def`` handler awaited on the running loop, then settle."""
        return await self.run(sub, received, True)

    async def run(self, sub: Subscription, received: ReceivedMessage, on_loop: bool) -> Outcome:
        """The pipeline: hooks, decode, filters, handler (and retries), settle."""
        started = _clock()
        message = Message(received)
        self._chain.run("pre_process_message", sub, message)
        attributes = dict(received.attributes)
        outcome = self._begin(sub, message, attributes, started)
        if outcome is not None:
            return self._finish(sub, message, received, outcome)
        kwargs = self._kwargs(sub, attributes, received)
        try:
            outcome = await self._handle(sub, message, kwargs, started, on_loop)
        except asyncio.CancelledError as exc:
            # The task was cancelled (a stop past its drain deadline): hand the
            # message back, and let post hooks close what pre hooks opened.
            outcome = Outcome(Status.FAILURE, Action.NACK, _clock() - started, exception=exc)
            self._finish(sub, message, received, outcome)
            raise
        ran = outcome.status is Status.FAILURE  # _handle ran the failure hooks
        return self._finish(sub, message, received, outcome, failure_hooks_ran=ran)

    async def _handle(
        self, sub: Subscription, message: Message, kwargs: dict[str, Any], started: float,
        on_loop: bool,
    ) -> Outcome:
        """Call the handler; again after a backoff while a failure hook asks for it."""
        while True:
            try:
                if on_loop:
                    result: Any = await sub._func(message.data, **kwargs)
                else:
                    result = sub._func(message.data, **kwargs)
                    if result is not None and asyncio.iscoroutine(result):  # async, on a thread
                        result = asyncio.run(result)
            except BaseException as exc:  # even SystemExit: one message never kills a worker
                if on_loop and isinstance(exc, asyncio.CancelledError):
                    raise
                outcome = self._raised(sub, exc, started)
            else:
                return Outcome(Status.SUCCESS, Action.ACK, _clock() - started, result=result)
            if outcome.status is not Status.FAILURE:
                return outcome
            self._chain.run("post_process_message_failure", sub, message, outcome)
            delay, outcome.retry_in = outcome.retry_in, None
            if delay is None or await self._stopped_within(max(0.0, float(delay)), on_loop):
                return outcome
            message.retries += 1

    async def _stopped_within(self, delay: float, on_loop: bool) -> bool:
        """Wait out a retry's backoff where the handler runs; True if the worker is
        stopping (at once if it already was)."""
        if on_loop:
            return await self._stopping.wait_async(delay)
        return self._stopping.wait(delay)

    def _begin(
        self, sub: Subscription, message: Message, attributes: dict[str, str], started: float
    ) -> Outcome | None:
        """Decode and filter. Returns an outcome if the handler must not run."""
        try:
            message.data = self._decode(message.raw)
        except DecodeError as exc:
            policy = sub.dead_letter if self._send_dead_letter is not None else None
            where = (
                f"sent to dead-letter topic {policy.topic}" if policy is not None
                else "acked and dropped (no dead-letter topic)"
            )
            logger.error(
                "message %s on subscription %s has an undecodable payload, %s (%s); payload: %s",
                message.id, sub.name, where, exc, message.preview(),
            )
            action = Action.DEAD_LETTER if policy is not None else Action.ACK
            return Outcome(Status.FAILURE, action, _clock() - started, exception=exc)
        if self._global_filters or sub.filters:
            try:
                passed = run_filters(self._global_filters, attributes) and sub.accepts(attributes)
            except BaseException as exc:  # a FilterError naming the filter, whatever it did
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

    @staticmethod
    def _kwargs(
        sub: Subscription, attributes: dict[str, str], received: ReceivedMessage
    ) -> dict[str, Any]:
        if sub.wants_attempt:
            return {**attributes, "delivery_attempt": received.delivery_attempt}
        return attributes

    def _raised(self, sub: Subscription, exc: BaseException, started: float) -> Outcome:
        """The outcome of a handler that raised ``exc`` (see the ack policy above)."""
        elapsed = _clock() - started
        if isinstance(exc, SkipMessage):
            return Outcome(Status.SKIPPED, Action.ACK, elapsed, exception=exc)
        if isinstance(exc, UnrecoverableError):
            keep = sub.dead_letter is not None and self._send_dead_letter is not None
            action = Action.DEAD_LETTER if keep else Action.ACK
            return Outcome(Status.FAILURE, action, elapsed, exception=exc)
        return Outcome(Status.FAILURE, Action.NACK, elapsed, exception=exc)

    def _finish(
        self,
        sub: Subscription,
        message: Message,
        received: ReceivedMessage,
        outcome: Outcome,
        *,
        failure_hooks_ran: bool = False,
    ) -> Outcome:
        run = self._chain.run
        if outcome.status is Status.SUCCESS:
            run("post_process_message_success", sub, message, outcome)
        elif outcome.status is Status.FAILURE and not failure_hooks_ran:
            run("post_process_message_failure", sub, message, outcome)
        run("post_process_message", sub, message, outcome)
        try:
            if outcome.action is Action.DEAD_LETTER:
                self._dead_letter(sub, message, received, outcome)
            elif outcome.action is Action.NACK:
                received.nack()
            elif sub.enable_exactly_once_delivery:
                received.ack_with_response().add_done_callback(
                    lambda f: self._check_ack(f, sub, message)
                )
            else:
                received.ack()
        except Exception as exc:
            logger.exception(
                "could not %s message %s on %s", outcome.action.value, message.id, sub.name
            )
            if outcome.action is Action.ACK:
                self._ack_failed(sub, message, exc)
        return outcome

    def _check_ack(self, future: Future[None], sub: Subscription, message: Message) -> None:
        error = future.exception()
        if error is not None:
            self._ack_failed(sub, message, error)

    def _ack_failed(self, sub: Subscription, message: Message, cause: BaseException) -> None:
        error = AckError(
            f"the ack of message {message.id} on {sub.name} was not applied "
            f"({type(cause).__name__}: {cause}); Pub/Sub will deliver it again"
        )
        error.__cause__ = cause
        logger.error("%s", error)
        self._chain.run("post_ack_failure", sub, message, error)

    def _dead_letter(
        self, sub: Subscription, message: Message, received: ReceivedMessage, outcome: Outcome
    ) -> None:
        policy, send = sub.dead_letter, self._send_dead_letter
        if policy is None or send is None:  # a middleware asked for it where there is none
            logger.error(
                "message %s on %s: dead-lettering asked for but the subscription has no "
                "dead-letter topic; nacked instead", message.id, sub.name,
            )
            received.nack()
            return
        attributes = dict(received.attributes)
        reason = f"{type(outcome.exception).__name__}: {outcome.exception}"
        extra = {
            "relay_dead_letter_reason": _clip(reason, MAX_ATTRIBUTE_VALUE_BYTES),
            "relay_dead_letter_subscription": sub.name,
        }
        if len(attributes) + len(extra) <= MAX_ATTRIBUTES:
            attributes.update(extra)

        def sent(future: Future[str]) -> None:
            error = future.exception()
            if error is None:
                logger.info(
                    "message %s on %s sent to dead-letter topic %s as %s",
                    message.id, sub.name, policy.topic, future.result(),
                )
                received.ack()
            else:
                logger.error(
                    "message %s on %s could not be sent to dead-letter topic %s (%s: %s); "
                    "nacked, so it will be delivered again", message.id, sub.name,
                    policy.topic, type(error).__name__, error,
                )
                received.nack()

        send(policy.topic, received.data, attributes).add_done_callback(sent)


def _clip(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "..."
